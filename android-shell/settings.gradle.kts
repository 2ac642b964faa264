// PocketKey Android: the engine as an Android library (pocketkey-core: generated uniffi
// bindings + libpocketkey_ffi.so per ABI), the app model in plain Kotlin (app-logic, tested on
// the JVM by tests/kotlin/run-app-logic.sh) and the thin app on top of it (app).
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
include(":pocketkey-core", ":app-logic", ":app")
