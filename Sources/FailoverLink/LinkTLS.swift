import NIOSSL

/// Mutual TLS for a failover link that crosses untrusted ground.
///
/// Each device presents its own certificate and accepts only a peer whose certificate chains to the pair's
/// trust roots; host names are not checked, since the peers are addressed by IP. The shared-secret
/// negotiation still runs inside the TLS connection.
///
/// ```swift
/// configuration.tls = try LinkTLS(
///     certificateChainFile: "/etc/tandem/device-1.pem",
///     privateKeyFile: "/etc/tandem/device-1.key",
///     trustRootsFile: "/etc/tandem/pair-ca.pem")
/// ```
public struct LinkTLS: Sendable {
    let server: NIOSSLContext
    let client: NIOSSLContext

    /// TLS from PEM files.
    /// - Parameters:
    ///   - certificateChainFile: this device's certificate, then any intermediates.
    ///   - privateKeyFile: this device's private key.
    ///   - trustRootsFile: the certificates a peer's chain must lead to (the pair's CA).
    /// - Throws: when a file is missing or not PEM of the right kind.
    public init(certificateChainFile: String, privateKeyFile: String, trustRootsFile: String) throws {
        let chain = try NIOSSLCertificate.fromPEMFile(certificateChainFile).map {
            NIOSSLCertificateSource.certificate($0)
        }
        let key = NIOSSLPrivateKeySource.privateKey(try NIOSSLPrivateKey(file: privateKeyFile, format: .pem))
        let roots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMFile(trustRootsFile))

        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: key)
        server.trustRoots = roots
        server.certificateVerification = .noHostnameVerification
        server.minimumTLSVersion = .tlsv12

        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain
        client.privateKey = key
        client.trustRoots = roots
        client.certificateVerification = .noHostnameVerification
        client.minimumTLSVersion = .tlsv12

        self.server = try NIOSSLContext(configuration: server)
        self.client = try NIOSSLContext(configuration: client)
    }
}
