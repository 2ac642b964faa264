import Foundation
import PocketKeyCore

extension PocketKeyModel {
    /// The one entry point for the camera (`.camera`) and for links the app is opened with
    /// (`.link`: custom scheme, Universal Links, pasted text). Pairing codes pair (camera
    /// only, see `classifyScan`), `FIDO:/` codes start hybrid where the platform can advertise
    /// it, activation links join the organisation. The outcome's message is also set as the
    /// notice.
    @discardableResult
    public func handleScan(_ text: String, source: ScanSource) async -> ScanOutcome {
        let outcome: ScanOutcome
        do {
            switch try classifyScan(text: text, source: source) {
            case let .pairing(url): outcome = await pair(url: url)
            case let .hybrid(url): outcome = startHybrid(url)
            // From the camera or a link alike (a Universal Link is the invite mail's button):
            // the token is single use and binds nothing until the server accepts this key.
            case let .activation(url, _): outcome = await activate(url: url)
            }
        } catch let error as ScanError {
            outcome = .rejected(error)
        } catch {
            outcome = .failed(.Internal(detail: error.localizedDescription))
        }
        if let message = outcome.message {
            notify(message)
        }
        return outcome
    }

    private func startHybrid(_ url: String) -> ScanOutcome {
        guard let advertiser = config.advertiser else {
            return .hybridNotSupported(message: ScanOutcome.hybridNotSupportedMessage)
        }
        guard let key else { return .failed(.Internal(detail: ModelError.notOpen.localizedDescription)) }
        let session: HybridSession
        do {
            session = try key.startHybrid(qr: url, advertiser: advertiser, tunnelUrl: config.hybridTunnelUrl)
        } catch let error as PocketKeyError {
            return .failed(error)
        } catch {
            return .failed(.Internal(detail: error.localizedDescription))
        }
        update { $0.hybrid = .running }
        Task {
            let status: AppState.HybridStatus
            do {
                let outcome = try await offThread { try session.wait() }
                status = .finished(requests: outcome.requests)
            } catch {
                status = .failed(message: error.pocketKeyUserMessage)
            }
            update { $0.hybrid = status }
        }
        return .hybridStarted
    }
}
