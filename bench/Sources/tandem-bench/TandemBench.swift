import ArgumentParser

@main
struct TandemBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem-bench",
        abstract: "Load benchmarks of Tandem.",
        discussion: """
            Build in release mode for figures worth quoting:
              swift run -c release --package-path bench tandem-bench store --json
            """,
        subcommands: [
            StoreScenario.self, FailoverScenario.self, InspectScenario.self, ScaleScenario.self,
            VersusRedisScenario.self, CrashScenario.self, InstallScenario.self,
        ]
    )
}
