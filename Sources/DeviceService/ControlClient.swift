import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The `tandem` command's side of the control socket: sends one request and reads its answer lines.
public enum ControlClient {
    /// Sends `request` to the device at `path` and returns its answer, one JSON object per line: for `users`,
    /// every user and then the count; otherwise one line.
    ///
    /// - Throws: ``ControlError`` saying what to do when no device runs at `path`, when the socket may not be
    ///   opened (its mode), or when the connection breaks.
    public static func send(
        _ request: ControlRequest,
        to path: String,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        line: (String) throws -> Void
    ) async throws {
        try checkReachable(path)
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: eventLoopGroup)
                .connect(unixDomainSocketPath: path) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ControlError(
                "cannot connect to the control socket \(path): \(error); is `tandem node` running there?"
            )
        }
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request.line + "\n"))
            var lines = ControlLines()
            for try await chunk in inbound {
                lines.append(chunk)
                while let text = lines.next() {
                    // Every answer ends with the line that says "ok" (a user's line has no such key).
                    let final = text.contains("\"ok\":")
                    try line(text)
                    if final { return }
                }
            }
            throw ControlError("the device closed the control connection before it answered")
        }
    }

    /// Refuses, with what to do, a socket path where no device can be reached.
    static func checkReachable(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw ControlError(
                "no device is running at \(path) (\(String(cString: strerror(errno)))): start `tandem node`, or "
                    + "give its control socket with --socket (control.socket in its configuration)"
            )
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ControlError("\(path) is not a socket: give the device's control socket with --socket")
        }
        guard access(path, W_OK) == 0 else {
            throw ControlError(
                "permission denied on the control socket \(path) (mode \(String(info.st_mode & 0o777, radix: 8))): "
                    + "run as its owner (uid \(info.st_uid)) or root, or widen control.mode in the device's configuration"
            )
        }
    }

    /// Whether a device answers on the socket at `path` (a connection is accepted).
    static func answers(_ path: String) -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }
}
