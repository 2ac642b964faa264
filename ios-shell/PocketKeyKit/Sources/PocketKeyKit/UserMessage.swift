import Foundation
import PocketKeyCore

extension Error {
    /// A sentence to show the user for any error a PocketKey call throws: the engine's own
    /// wording for `PocketKeyError`, `ScanError` and `HybridError`, a generic sentence otherwise.
    public var pocketKeyUserMessage: String {
        switch self {
        case let error as PocketKeyError: return error.userMessage()
        case let error as ScanError: return error.userMessage()
        case let error as HybridError: return error.userMessage()
        case let error as ModelError: return error.errorDescription ?? "\(error)"
        default: return "Something went wrong: \(localizedDescription)"
        }
    }
}
