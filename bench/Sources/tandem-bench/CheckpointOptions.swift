import ArgumentParser
import SessionStore

/// The store's checkpoint settings, as options of the scenarios that build a store.
struct CheckpointOptions: ParsableArguments {
    @Option(help: "Seconds between checkpoints (default: the store's).")
    var checkpointInterval: Double?

    @Option(help: "Changes in memory that start a checkpoint at once (default: the store's).")
    var checkpointThreshold: Int?

    @Option(help: "Changes in memory at which callers wait for the running checkpoint (default: the store's).")
    var maxChangesInMemory: Int?

    /// Sets the settings given on `configuration`.
    func apply(to configuration: inout SessionStore.Configuration) throws {
        if let checkpointInterval {
            guard checkpointInterval > 0 else { throw ValidationError("--checkpoint-interval must be above 0") }
            configuration.checkpointInterval = .milliseconds(Int64(checkpointInterval * 1000))
        }
        if let checkpointThreshold { configuration.checkpointThreshold = checkpointThreshold }
        if let maxChangesInMemory { configuration.maxChangesInMemory = maxChangesInMemory }
    }

    /// The settings given, as arguments of a child process.
    var arguments: [String] {
        var arguments: [String] = []
        if let checkpointInterval { arguments += ["--checkpoint-interval", "\(checkpointInterval)"] }
        if let checkpointThreshold { arguments += ["--checkpoint-threshold", "\(checkpointThreshold)"] }
        if let maxChangesInMemory { arguments += ["--max-changes-in-memory", "\(maxChangesInMemory)"] }
        return arguments
    }
}
