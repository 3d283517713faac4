import Foundation

/// A temporary directory for one test, made by `mkdtemp` and removed with everything in it when the last
/// reference goes (keep it in a `let` for the test's whole body).
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "tandem-test") {
        var template = Array("\(NSTemporaryDirectory())/\(prefix)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    /// A path inside the directory that does not exist yet.
    public func child(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Polls `condition` every 10 ms until it holds or `limit` passes: for state that the store's threads or
/// real sockets reach in their own time. Returns whether it held.
public func eventually(
    within limit: Duration = .seconds(10),
    _ condition: () throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try condition()
}
