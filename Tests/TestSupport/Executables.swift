import Foundation

/// The `tandem` executable built beside the tests (the crash tests and the two-process tests run it).
public func tandemExecutable() -> URL {
    let tests = URL(
        fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
    )
    var directory = tests.deletingLastPathComponent()
    while directory.path != "/" {
        let candidate = directory.appendingPathComponent("tandem")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory.deleteLastPathComponent()
    }
    return tests.deletingLastPathComponent().appendingPathComponent("tandem")
}
