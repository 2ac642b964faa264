// swift-tools-version:5.9
// PocketKeyKit: the PocketKey engine (Rust, through uniffi) for the iOS app, plus the
// app-facing helpers that wrap it. See ../README.md for what builds where.
//
// Targets:
//   PocketKeyCoreFFI  the C side of the uniffi bindings (header + module map):
//                     Apple platforms: a binary target, ../build/PocketKeyCoreFFI.xcframework
//                     (static libraries for device and simulator, scripts/build-xcframework.sh);
//                     Linux: a system library over the generated header; the symbols come from
//                     the host-built libpocketkey_ffi.so (scripts/prepare-linux.sh, test-linux.sh).
//   PocketKeyCore     the generated Swift bindings (Sources/PocketKeyCore/PocketKeyCore.swift,
//                     copied in by the scripts; not committed).
//   PocketKeyKit      helpers for the app: ApprovalCenter, KeychainKeyProvider,
//                     MemoryKeyProvider, async requests.
//
// Swift 5 language mode for everything: swiftc 6.0.3 crashes on uniffi's generated code in
// Swift 6 mode (uniffi issue 2929, scripts/toolchains/README.md).
import PackageDescription

#if os(Linux)
let ffiTarget: Target = .systemLibrary(name: "PocketKeyCoreFFI", path: "Sources/PocketKeyCoreFFI")
// Test-only: OpenSSL's libcrypto checks ES256 signatures where CryptoKit does not exist.
let testOnlyTargets: [Target] = [
    .systemLibrary(name: "CPocketKeyOpenSSL", path: "Tests/CPocketKeyOpenSSL"),
]
let testDependencies: [Target.Dependency] = ["PocketKeyKit", "CPocketKeyOpenSSL"]
#else
let ffiTarget: Target = .binaryTarget(name: "PocketKeyCoreFFI", path: "../build/PocketKeyCoreFFI.xcframework")
let testOnlyTargets: [Target] = []
let testDependencies: [Target.Dependency] = ["PocketKeyKit"]
#endif

let package = Package(
    name: "PocketKeyKit",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "PocketKeyKit", targets: ["PocketKeyKit"]),
        .library(name: "PocketKeyCore", targets: ["PocketKeyCore"]),
    ],
    targets: [
        ffiTarget,
        .target(
            name: "PocketKeyCore",
            dependencies: ["PocketKeyCoreFFI"],
            path: "Sources/PocketKeyCore",
            // On Linux the library is the host-built shared object; its directory is passed on
            // the command line (-Xlinker -L<dir>). On Apple platforms the xcframework carries it.
            linkerSettings: [.linkedLibrary("pocketkey_ffi", .when(platforms: [.linux]))]
        ),
        .target(name: "PocketKeyKit", dependencies: ["PocketKeyCore"], path: "Sources/PocketKeyKit"),
        .testTarget(name: "PocketKeyKitTests", dependencies: testDependencies, path: "Tests/PocketKeyKitTests"),
    ] + testOnlyTargets,
    swiftLanguageVersions: [.v5]
)
