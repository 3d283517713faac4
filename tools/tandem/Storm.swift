import ArgumentParser
import Foundation
import Locking
import SessionStore

/// Drives a store with a login storm and prints every acknowledgement as it arrives.
struct Storm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Log users in (and some out) from many concurrent callers, printing each acknowledgement.",
        discussion: """
            Each line on standard output is one acknowledged event, written as soon as the store \
            acknowledged it: `login <ip>` or `logout <ip>`. Every third user is logged out again once \
            its login is acknowledged. Addresses are 10.0.0.0 plus the user number (then fd00::/64 past \
            the IPv4 range). This is the load of the crash test: kill the process at any moment, reopen \
            the store, and every acknowledged login (not logged out) must be there.

            Example:
              tandem storm --path /tmp/store --users 100000 --concurrency 64
            """
    )

    @OptionGroup var store: StoreOptions

    @Option(help: "How many users to log in.")
    var users: Int = 100_000

    @Option(help: "How many concurrent callers.")
    var concurrency: Int = 64

    @Option(help: "The first user number (to continue an earlier storm on the same store).")
    var first: Int = 0

    func run() async throws {
        let store = try SessionStore.open(at: store.path, configuration: try store.configuration())
        let portalGroup = store.portalGroup
        let deviceID = store.deviceID
        let output = AcknowledgementLog()
        let next = ManagedCounter(first)
        let end = first + users
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while true {
                        let number = next.next()
                        guard number < end else { return }
                        let session = StormSession.make(number: number, portalGroup: portalGroup, owner: deviceID)
                        try await store.login(session)
                        output.write("login \(session.ip)\n")
                        if number % 3 == 0 {
                            try await store.logout(session.ip, reason: .user)
                            output.write("logout \(session.ip)\n")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        await store.close()
    }
}

/// The sessions a storm logs in.
enum StormSession {
    /// The input octets of user `number`'s accounting report in an update storm: past 32 bits, and
    /// different for each user.
    static func reportedOctets(number: Int) -> UInt64 { UInt64(number) << 32 | 0xACC7 }

    static func address(_ number: Int) -> IPAddress {
        if number < 1 << 24 { return IPAddress(ipv4: 0x0A00_0000 | UInt32(number)) }
        return IPAddress(high: 0xFD00_0000_0000_0000, low: UInt64(number))
    }

    static func make(number: Int, portalGroup: PortalGroup, owner: DeviceID) -> Session {
        Session(
            ip: address(number),
            mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(number)),
            userName: "user\(number)",
            vlan: UInt16(100 + number % 64),
            accessInterface: "GigabitEthernet1/0/\(1 + number % 48)",
            portalGroup: portalGroup,
            owner: owner,
            sessionTimeout: 86_400,
            idleTimeout: 900,
            radius: RADIUSAttributes(
                nasIP: IPAddress(ipv4: 0xC0A8_0001),
                acctSessionID: String(format: "%016llx", UInt64(number)),
                classAttribute: Array("class-\(number)".utf8)
            )
        )
    }
}

/// Standard output, one unbuffered write per acknowledgement.
final class AcknowledgementLog: Sendable {
    func write(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Foundation.write(1, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

/// A counter shared by concurrent callers.
final class ManagedCounter: Sendable {
    private let value: Locked<Int>
    init(_ start: Int) { value = Locked(start) }
    func next() -> Int {
        value.withLock { value in
            defer { value += 1 }
            return value
        }
    }
}
