import Configuration
import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension NodeSettings {
    /// Reads the settings of a device: `overrides` (the command line's options, by key) over the environment's
    /// `TANDEM_…` variables over the JSON file at `file`.
    ///
    /// - Parameters:
    ///   - file: the configuration file; `nil` for none (every required key then comes from the others).
    ///   - overrides: values by key, such as `["failover.listen": "127.0.0.1:7400"]`.
    ///   - environment: the environment variables (the process's by default).
    /// - Throws: ``SettingsError`` for a file that cannot be read or parsed, a key it holds that is not one of
    ///   ``keys``, and every wrong or missing value.
    public static func load(
        file: String?,
        overrides: [String: String] = [:],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws(SettingsError) -> NodeSettings {
        var providers: [any ConfigProvider] = []
        providers.append(
            InMemoryProvider(
                name: "command line",
                values: Dictionary(
                    uniqueKeysWithValues: overrides.map {
                        (AbsoluteConfigKey(ConfigKey($0.key)), ConfigValue(.string($0.value), isSecret: false))
                    }
                )
            )
        )
        let tandemVariables = environment.filter { $0.key.hasPrefix("TANDEM_") }
        providers.append(
            EnvironmentVariablesProvider(environmentVariables: tandemVariables).prefixKeys(with: ["tandem"])
        )
        if let file {
            try checkKeys(ofFile: file)
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(file)))
            } catch {
                throw SettingsError(key: "--config", value: file, problem: "cannot be read as JSON: \(error)")
            }
        }
        return try NodeSettings(reading: ConfigReader(providers: providers), localAddresses: localAddresses())
    }

    /// Refuses a file that is not a JSON object, or that holds a key this version does not know (a typo would
    /// otherwise leave a setting at its default without a word).
    static func checkKeys(ofFile file: String) throws(SettingsError) {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw SettingsError(
                key: "--config",
                value: file,
                problem: "cannot be read: \(String(cString: strerror(errno)))"
            )
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw SettingsError(key: "--config", value: file, problem: "is not JSON: \(error.localizedDescription)")
        }
        guard let root = object as? [String: Any] else {
            throw SettingsError(key: "--config", value: file, problem: "is not a JSON object of sections")
        }
        let known = Set(keys.map(\.key))
        var found: [String] = []
        func walk(_ value: Any, _ path: String) {
            if let object = value as? [String: Any] {
                for (key, inner) in object { walk(inner, path.isEmpty ? key : path + "." + key) }
            } else {
                found.append(path)
            }
        }
        walk(root, "")
        for key in found.sorted() where !known.contains(key) {
            throw SettingsError(
                key: key,
                value: nil,
                problem: "is not a setting of tandem node; the settings are \(keys.map(\.key).joined(separator: ", "))"
            )
        }
    }

    /// The IP addresses of this machine's interfaces, as text.
    public static func localAddresses() -> Set<String> {
        var found: Set<String> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return found }
        defer { freeifaddrs(list) }
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let address = current.pointee.ifa_addr else { continue }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let length =
                address.pointee.sa_family == sa_family_t(AF_INET)
                ? socklen_t(MemoryLayout<sockaddr_in>.size)
                : address.pointee.sa_family == sa_family_t(AF_INET6)
                    ? socklen_t(MemoryLayout<sockaddr_in6>.size) : 0
            guard length > 0,
                getnameinfo(address, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0
            else { continue }
            var text = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let percent = text.firstIndex(of: "%") { text = String(text[..<percent]) }  // fe80::1%eth0
            found.insert(text)
        }
        return found
    }

    /// Reads the pair's shared secret from `path`, refusing a file that others may read (as ssh refuses a
    /// private key) and one shorter than 16 bytes.
    public static func readSecret(at path: String) throws(SettingsError) -> [UInt8] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw SettingsError(
                key: "failover.secret_file",
                value: path,
                problem: "cannot be read: \(String(cString: strerror(errno))); create it with "
                    + "`head -c 32 /dev/urandom > \(path) && chmod 600 \(path)`"
            )
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw SettingsError(
                key: "failover.secret_file",
                value: path,
                problem: "has mode \(String(mode, radix: 8, uppercase: false).leftPadded(to: 4)), readable by others; "
                    + "run `chmod 600 \(path)`"
            )
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SettingsError(
                key: "failover.secret_file",
                value: path,
                problem: "cannot be read: \(String(cString: strerror(errno)))"
            )
        }
        var bytes = Array(data)
        while bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        guard bytes.count >= 16 else {
            throw SettingsError(
                key: "failover.secret_file",
                value: path,
                problem: "holds \(bytes.count) bytes; use at least 16 (`head -c 32 /dev/urandom > \(path)`)"
            )
        }
        return bytes
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
