import FailoverLink
import FuzzerDriver
import NIOCore
import SessionStore

// A libFuzzer target for the link's frame decoder and the negotiation that reads the frames it yields.
// Build and run it with tools/fuzz-frames.sh. Built without FUZZING (see Package.swift), it is a corpus
// replayer: it runs the files named on its command line through the same function, so a crash the fuzzer
// found stays a test.

private let identity = LinkIdentity(
    deviceID: 2,
    portalGroup: "campus",
    configurationDigest: Array(repeating: 0xAB, count: 32)
)
private let secret = LinkSecret(bytes: Array(repeating: 0x5A, count: 32))

func exercise(_ bytes: UnsafeRawBufferPointer) {
    var buffer = ByteBuffer(bytes: bytes)
    var negotiation = Negotiation(
        identity: identity,
        secret: secret,
        role: .acceptor,
        nonce: Array(repeating: 1, count: 32)
    )
    _ = negotiation.start()
    var opener = FrameOpener(key: secret)
    while true {
        let frame: Frame?
        do {
            frame = try Frame.read(from: &buffer, maximumLength: 1 << 16)
        } catch {
            return
        }
        guard let frame else { return }
        _ = negotiation.receive(frame)
        _ = try? opener.open(frame)
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrame(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    exercise(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// The entry point: libFuzzer's driver (see `runLibFuzzer`).
@main
enum FuzzerEntry {
    static func main() {
        runLibFuzzer { data, size in
            guard let data else { return 0 }
            return fuzzFrame(data, size)
        }
    }
}
#else
@main
enum CorpusReplayer {
    static func main() throws {
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else { throw ReplayError(path: path) }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = fread(&chunk, 1, chunk.count, file)
                if count <= 0 { break }
                bytes.append(contentsOf: chunk[0..<count])
            }
            fclose(file)
            bytes.withUnsafeBytes { exercise($0) }
            print("ok \(path) (\(bytes.count) bytes)")
        }
    }
}

struct ReplayError: Error, CustomStringConvertible {
    let path: String
    var description: String { "cannot read \(path)" }
}
#endif

#if canImport(Glibc)
import Glibc
#endif
