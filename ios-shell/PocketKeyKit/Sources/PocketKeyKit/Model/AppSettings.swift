import Foundation

/// The user's settings, kept as a small JSON file next to (not inside) the key's data
/// directory, so a storage reset keeps them.
public struct AppSettings: Codable, Equatable, Sendable {
    /// What paired computers call this phone (shown in their pairing confirmation).
    public var phoneName: String = "iPhone"
    /// Developer mode: pair with relays reached over plain `ws://` off loopback.
    public var allowInsecureRelay: Bool = false
    /// Keep a connection to every paired computer while the app is in the foreground.
    public var listenInForeground: Bool = true

    public init() {}

    public init(from decoder: Decoder) throws {
        // Every field optional: a file written by an older version still loads.
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = AppSettings()
        phoneName = try c.decodeIfPresent(String.self, forKey: .phoneName) ?? defaults.phoneName
        allowInsecureRelay = try c.decodeIfPresent(Bool.self, forKey: .allowInsecureRelay)
            ?? defaults.allowInsecureRelay
        listenInForeground = try c.decodeIfPresent(Bool.self, forKey: .listenInForeground)
            ?? defaults.listenInForeground
    }

    /// The settings in `file`, or the defaults when it is missing or unreadable.
    public static func load(from file: URL) -> AppSettings {
        guard let data = try? Data(contentsOf: file),
              let settings = try? JSONDecoder().decode(AppSettings.self, from: data)
        else { return AppSettings() }
        return settings
    }

    public func save(to file: URL) throws {
        try FileManager.default.createDirectory(
            at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONEncoder().encode(self).write(to: file, options: .atomic)
    }
}
