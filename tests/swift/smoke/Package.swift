// swift-tools-version:6.0
// Smoke test of the Swift toolchain (scripts/toolchains/swift.sh): the same shape as the
// uniffi bindings package. A system-library target exposes a C header through a module map
// (like uniffi's <name>FFI.modulemap), a Swift target wraps it and links a prebuilt .so whose
// directory is given on the command line (-Xlinker -L<dir>), and an XCTest target tests it.
import PackageDescription

let package = Package(
    name: "Smoke",
    products: [
        .library(name: "Smoke", targets: ["Smoke"]),
    ],
    targets: [
        // C declarations only; the symbols come from libsmoke_ffi.so (built by run.sh).
        .systemLibrary(name: "smoke_ffiFFI", path: "Sources/smoke_ffiFFI"),
        .target(
            name: "Smoke",
            dependencies: ["smoke_ffiFFI"],
            // Swift 5 language mode, as the uniffi bindings need with swiftc 6.0.3
            // (async foreign traits crash the compiler in Swift 6 mode).
            swiftSettings: [.swiftLanguageMode(.v5)],
            linkerSettings: [.linkedLibrary("smoke_ffi")]
        ),
        .testTarget(
            name: "SmokeTests",
            dependencies: ["Smoke"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
