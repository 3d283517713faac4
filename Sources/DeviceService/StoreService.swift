import ServiceLifecycle
import SessionStore

/// A store as a swift-service-lifecycle `Service`: it runs until the group shuts down gracefully, then closes
/// the store (a checkpoint, so that the next open replays nothing). List it first in the group: a group shuts
/// its services down in the reverse of their order, so the node and everything that writes through it stop
/// before the store closes.
public struct StoreService: Service {
    public let store: SessionStore

    public init(_ store: SessionStore) { self.store = store }

    public func run() async throws {
        try? await gracefulShutdown()
        await store.close()
    }
}
