import Foundation

/// Runs the commands the lab needs (`ip`, `nft`, `mount`, the `tandem` tool) and reports what failed.
enum Shell {
    struct Failure: Error, CustomStringConvertible {
        var command: [String]
        var status: Int32
        var output: String
        var description: String {
            "`\(command.joined(separator: " "))` exited with \(status): \(output.trimmingCharacters(in: .whitespacesAndNewlines))"
        }
    }

    /// Runs `command` to its end; returns its standard output and error together, and its exit status.
    @discardableResult
    static func run(_ command: [String], check: Bool = true) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        if check && process.terminationStatus != 0 {
            throw Failure(command: command, status: process.terminationStatus, output: output)
        }
        return (process.terminationStatus, output)
    }

    /// Whether `tool` is on the path.
    static func has(_ tool: String) -> Bool {
        (try? run(["sh", "-c", "command -v \(tool)"], check: false).status) == 0
    }
}
