import PocketKeyKit
import XCTest

/// classifyScan: one entry point for the camera and for deep links.
final class ScanTests: XCTestCase {
    private let qr = "FIDO:/" + String(repeating: "1", count: 17 * 4) + "123"

    func testRecognisesOurCodes() throws {
        XCTAssertEqual(try classifyScan(text: qr, source: .link), .hybrid(url: qr))
        XCTAssertEqual(try classifyScan(text: qr.lowercased(), source: .camera), .hybrid(url: qr.lowercased()))
        XCTAssertEqual(try classifyScan(text: "pocketkey://pair?k=abc&n=Work", source: .camera),
                       .pairing(url: "pocketkey://pair?k=abc&n=Work"))
        XCTAssertEqual(try classifyScan(text: "https://keys.example.com/activate?token=a%2Fb", source: .link),
                       .activation(url: "https://keys.example.com/activate?token=a%2Fb", token: "a/b"))
        XCTAssertEqual(try classifyScan(text: "pocketkey://activate?token=xyz", source: .link),
                       .activation(url: "pocketkey://activate?token=xyz", token: "xyz"))
    }

    /// A pairing code from a link (a web page, another app) is refused: only the camera pairs.
    func testPairingOnlyFromTheCamera() {
        XCTAssertThrowsError(try classifyScan(text: "pocketkey://pair?k=abc&n=Work", source: .link)) { error in
            XCTAssertEqual(error as? ScanError, .PairingNeedsCamera)
            XCTAssertEqual((error as? ScanError)?.userMessage(),
                           "Scan the code shown by PocketKey on your computer with the app's camera")
        }
    }

    func testRejectsWithATypedError() {
        let cases: [(String, ScanError)] = [
            ("https://example.com/", .NotOurs),
            ("WIFI:S:home;T:WPA;P:secret;;", .NotOurs),
            ("", .NotOurs),
            ("FIDO:/12ab", .Malformed),
            ("pocketkey://pair", .Malformed),
            ("pocketkey://activate?token=", .Malformed),
            (qr + "\n", .Malformed),
            ("https://example.com/activate?token=" + String(repeating: "a", count: 5000), .Malformed),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try classifyScan(text: text, source: .camera), String(text.prefix(40))) { error in
                XCTAssertEqual(error as? ScanError, expected, String(text.prefix(40)))
                XCTAssertFalse((error as? ScanError)?.userMessage().isEmpty ?? true)
                XCTAssertEqual(error.pocketKeyUserMessage, (error as? ScanError)?.userMessage())
            }
        }
    }
}
