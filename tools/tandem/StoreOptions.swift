import ArgumentParser
import SessionStore

/// Options shared by the commands that open a store.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "The store's directory.")
    var path: String

    @Option(name: .long, help: "This device's ID (1-255).")
    var deviceID: Int = 1

    @Option(name: .long, help: "The portal group of the portal service backup interface.")
    var portalGroup: String = "portal"

    @Option(name: .long, help: "sync (every commit flushed), no-meta-sync, or no-sync.")
    var durability: DurabilityOption = .sync

    func configuration() throws -> SessionStore.Configuration {
        var configuration = SessionStore.Configuration(
            deviceID: try DeviceID(deviceID),
            portalGroup: try PortalGroup(portalGroup)
        )
        configuration.durability = durability.value
        return configuration
    }
}

enum DurabilityOption: String, ExpressibleByArgument, CaseIterable {
    case sync
    case noMetaSync = "no-meta-sync"
    case noSync = "no-sync"

    var value: SessionStore.Durability {
        switch self {
        case .sync: .syncEveryCommit
        case .noMetaSync: .noMetaSync
        case .noSync: .noSync
        }
    }
}
