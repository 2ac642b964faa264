import Smoke
import XCTest

final class SmokeTests: XCTestCase {
    func testCallsIntoTheNativeLibrary() {
        XCTAssertEqual(add(40, 2), 42)
    }

    func testBuffersCrossTheBoundary() {
        XCTAssertEqual(greet("PocketKey ✓"), "hello, PocketKey ✓")
    }

    func testCallbackFromANativeThread() async {
        let results = await withTaskGroup(of: Int32.self) { group in
            for i in Int32(1)...8 { group.addTask { await doubledLater(i) } }
            return await group.reduce(into: [Int32]()) { $0.append($1) }
        }
        XCTAssertEqual(results.sorted(), (1...8).map { Int32($0 * 2) })
    }
}
