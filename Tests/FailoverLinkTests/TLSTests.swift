import Foundation
import NIOCore
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

/// A pair CA and device certificates made with the openssl command for one test, in a temporary directory.
final class TestCertificates {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "tandem-tls-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try makeCA("pair-ca")
        try makeCA("other-ca")
        try makeDevice("device-1", ca: "pair-ca")
        try makeDevice("device-2", ca: "pair-ca")
        try makeDevice("intruder", ca: "other-ca")
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func tls(_ name: String, trusting ca: String = "pair-ca") throws -> LinkTLS {
        try LinkTLS(
            certificateChainFile: path("\(name).pem"),
            privateKeyFile: path("\(name).key"),
            trustRootsFile: path("\(ca).pem")
        )
    }

    private func path(_ file: String) -> String { directory + "/" + file }

    private func makeCA(_ name: String) throws {
        try openssl(
            ["req", "-x509"] + newKey(name) + ["-out", path("\(name).pem"), "-subj", "/CN=\(name)", "-days", "2"]
        )
    }

    private func makeDevice(_ name: String, ca: String) throws {
        try openssl(["req"] + newKey(name) + ["-out", path("\(name).csr"), "-subj", "/CN=\(name)"])
        try openssl([
            "x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(ca).pem"), "-CAkey", path("\(ca).key"),
            "-CAcreateserial", "-out", path("\(name).pem"), "-days", "2",
        ])
    }

    /// The arguments that make a new P-256 key, unencrypted, in `name`.key.
    private func newKey(_ name: String) -> [String] {
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", path("\(name).key")]
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
    }
}

@Suite("Failover link over TLS", .serialized)
struct TLSTests {
    static func pair(
        _ certificates: TestCertificates,
        one: LinkTLS?,
        two: LinkTLS?
    ) async throws -> (FailoverLinkService, FailoverLinkService) {
        var twoConfiguration = try LinkServiceTests.configuration(2, host: "127.0.0.2")
        twoConfiguration.tls = two
        let second = FailoverLinkService(configuration: twoConfiguration)
        try await second.start()
        var oneConfiguration = try LinkServiceTests.configuration(
            1,
            host: "127.0.0.1",
            peer: second.listeningAddress
        )
        oneConfiguration.tls = one
        let first = FailoverLinkService(configuration: oneConfiguration)
        try await first.start()
        return (first, second)
    }

    @Test("devices with certificates of the pair's CA negotiate inside TLS")
    func mutualTLS() async throws {
        let certificates = try TestCertificates()
        let (one, two) = try await Self.pair(
            certificates,
            one: try certificates.tls("device-1"),
            two: try certificates.tls("device-2")
        )
        #expect(await eventually { one.state == .synchronization && two.state == .synchronization })
        await one.shutdown()
        await two.shutdown()
    }

    @Test("a certificate of another CA is refused")
    func foreignCertificate() async throws {
        let certificates = try TestCertificates()
        let (one, two) = try await Self.pair(
            certificates,
            one: try certificates.tls("intruder", trusting: "other-ca"),
            two: try certificates.tls("device-2")
        )
        #expect(await eventually { "\(one.state)".contains("TLS failed") || "\(two.state)".contains("TLS failed") })
        try await Task.sleep(for: .milliseconds(200))
        #expect(one.state != .synchronization && two.state != .synchronization)
        await one.shutdown()
        await two.shutdown()
    }

    @Test("a device without TLS does not reach a device that requires it")
    func plaintextAgainstTLS() async throws {
        let certificates = try TestCertificates()
        let (one, two) = try await Self.pair(certificates, one: nil, two: try certificates.tls("device-2"))
        #expect(await eventually { "\(two.state)".contains("TLS failed") || "\(one.state)".contains("negotiation") })
        try await Task.sleep(for: .milliseconds(200))
        #expect(one.state != .synchronization && two.state != .synchronization)
        await one.shutdown()
        await two.shutdown()
    }
}
