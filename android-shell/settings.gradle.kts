// PocketKey Android: the engine as an Android library (pocketkey-core: generated uniffi
// bindings + libpocketkey_ffi.so per ABI) and the thin app on top of it (app).
// Not built in CI (no Android SDK on the CI machine): see README.md.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "PocketKey"
include(":pocketkey-core", ":app")
