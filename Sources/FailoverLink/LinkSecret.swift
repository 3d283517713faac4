import Crypto

/// Key material of the link: the secret both devices share, or a key derived from it.
///
/// Held as bytes, so that it is `Sendable`; ``symmetricKey`` gives it to swift-crypto.
public struct LinkSecret: Sendable, Hashable {
    /// The key's bytes.
    let bytes: [UInt8]

    /// A secret from its bytes.
    /// - Parameter bytes: at least 16 bytes; a secret file's contents, say.
    public init(bytes: some Sequence<UInt8>) {
        self.bytes = Array(bytes)
    }

    init(_ key: SymmetricKey) {
        bytes = key.withUnsafeBytes { Array($0) }
    }

    /// The key for swift-crypto.
    var symmetricKey: SymmetricKey { SymmetricKey(data: bytes) }
}
