import Foundation
import PocketKeyCore

/// A `KeyProvider` that keeps the master key in memory: for tests, previews and Linux. Data
/// sealed under it cannot be opened after the process ends unless you keep `key` yourself.
public final class MemoryKeyProvider: KeyProvider, @unchecked Sendable {
    /// The 32 bytes handed to the engine.
    public let key: Data

    /// A fresh random master key (from the system's secure random number generator).
    public convenience init() {
        var rng = SystemRandomNumberGenerator()
        self.init(key: Data((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }))
    }

    /// A given master key. The engine refuses anything but 32 bytes
    /// (`PocketKeyError.MasterKeyWrongLength`), which tests use on purpose.
    public init(key: Data) {
        self.key = key
    }

    public func masterKey() throws -> Data {
        key
    }
}
