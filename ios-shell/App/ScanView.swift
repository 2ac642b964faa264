import AVFoundation
import PocketKeyKit
import SwiftUI
import UIKit
import VisionKit

/// The camera: reads one QR code and hands its text to `onCode` (which goes to
/// `PocketKeyModel.handleScan`). Asks for the camera first; a denied camera says how to allow
/// it in Settings. Falls back to a text field where the Live Text scanner is unavailable
/// (simulator, old devices) or the camera is denied; pasted text may come from anywhere, so
/// it counts as a link (it cannot pair).
struct ScanView: View {
    let onCode: (String, ScanSource) -> Void
    @State private var typed = ""
    @State private var camera = AVCaptureDevice.authorizationStatus(for: .video)

    var body: some View {
        Group {
            if camera == .authorized && DataScannerViewController.isSupported && DataScannerViewController.isAvailable {
                QRScanner(onCode: { onCode($0, .camera) }).ignoresSafeArea()
            } else {
                Form {
                    if camera == .denied || camera == .restricted {
                        Section("Camera not allowed") {
                            Text("PocketKey needs the camera to scan the pairing code your computer shows.")
                            Button("Open Settings") {
                                if let url = URL(string: UIApplication.openSettingsURLString) {
                                    UIApplication.shared.open(url)
                                }
                            }
                        }
                    }
                    Section("Paste a code or link") {
                        TextField("FIDO:/… or https://…/activate…", text: $typed)
                            .textInputAutocapitalization(.never)
                            .autocorrectionDisabled()
                        Button("Use it") { onCode(typed, .link) }.disabled(typed.isEmpty)
                    }
                }
            }
        }
        .task {
            if camera == .notDetermined {
                _ = await AVCaptureDevice.requestAccess(for: .video)
                camera = AVCaptureDevice.authorizationStatus(for: .video)
            }
        }
    }
}

private struct QRScanner: UIViewControllerRepresentable {
    let onCode: (String) -> Void

    func makeCoordinator() -> Coordinator { Coordinator(onCode: onCode) }

    func makeUIViewController(context: Context) -> DataScannerViewController {
        let scanner = DataScannerViewController(
            recognizedDataTypes: [.barcode(symbologies: [.qr])],
            qualityLevel: .balanced,
            recognizesMultipleItems: false,
            isHighFrameRateTrackingEnabled: false,
            isHighlightingEnabled: true)
        scanner.delegate = context.coordinator
        try? scanner.startScanning()
        return scanner
    }

    func updateUIViewController(_ controller: DataScannerViewController, context: Context) {}

    static func dismantleUIViewController(_ controller: DataScannerViewController, coordinator: Coordinator) {
        controller.stopScanning()
    }

    final class Coordinator: NSObject, DataScannerViewControllerDelegate {
        let onCode: (String) -> Void
        private var delivered = false

        init(onCode: @escaping (String) -> Void) { self.onCode = onCode }

        func dataScanner(_ dataScanner: DataScannerViewController, didAdd addedItems: [RecognizedItem],
                         allItems: [RecognizedItem]) {
            guard !delivered else { return }
            for item in addedItems {
                if case let .barcode(barcode) = item, let text = barcode.payloadStringValue {
                    delivered = true
                    dataScanner.stopScanning()
                    onCode(text)
                    return
                }
            }
        }
    }
}
