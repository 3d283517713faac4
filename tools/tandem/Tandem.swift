import ArgumentParser

@main
struct Tandem: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Tandem: the replicated session store of a captive-portal failover pair.",
        discussion: """
            Tandem keeps the online portal users of a device in an LMDB-backed, log-structured store. \
            Exit status: 0 on success, 1 when the command failed (the error says why), 64 on a usage error.
            """,
        subcommands: [
            Demo.self, Node.self, Status.self, Promote.self, Logout.self, Log.self, Users.self, Diff.self, Storm.self,
        ]
    )
}
