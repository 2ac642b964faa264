// The app model: plain Kotlin, no Android classes (scan routing, pairings, push, the approval
// queue, settings, recovery). Built here as an Android library only because the engine's
// bindings it calls come as one (:pocketkey-core); on the JVM tests/kotlin/run-app-logic.sh
// compiles the same sources with kotlinc against the JVM bindings and tests them end to end.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "com.pocketkey.applogic"
    compileSdk = 35

    defaultConfig {
        minSdk = 28
    }

    sourceSets.getByName("main") {
        java.srcDir("src/main/kotlin")
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    // `api`: the model's API hands out the engine's types (SecurityKey, ApprovalPrompt…).
    api(project(":pocketkey-core"))
}
