// The engine for the app: uniffi's Kotlin bindings (package com.pocketkey.core, generated with
// android = true) over libpocketkey_ffi.so, loaded through JNA.
// Both inputs come from ../scripts/build-android.sh and are git-ignored:
//   src/main/uniffi/com/pocketkey/core/pocketkey_ffi.kt
//   src/main/jniLibs/{arm64-v8a,armeabi-v7a,x86_64}/libpocketkey_ffi.so
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "com.pocketkey.core"
    compileSdk = 35

    defaultConfig {
        // Android 9: BiometricPrompt and StrongBox-capable Keystore in the app; the .so is
        // linked for this API level too (ANDROID_API in build-android.sh).
        minSdk = 28
        consumerProguardFiles("consumer-rules.pro")
    }

    sourceSets.getByName("main") {
        // AGP compiles Kotlin files found in java source directories.
        java.srcDir("src/main/uniffi")
        // jniLibs: the default src/main/jniLibs.
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

// Fail early, with the fix, instead of with hundreds of unresolved references.
val checkGeneratedBindings by tasks.registering {
    val kt = file("src/main/uniffi/com/pocketkey/core/pocketkey_ffi.kt")
    val jni = file("src/main/jniLibs")
    doLast {
        if (!kt.isFile || !jni.isDirectory) {
            throw GradleException(
                "pocketkey-core: generated bindings or jniLibs missing; run android-shell/scripts/build-android.sh",
            )
        }
    }
}
tasks.named("preBuild") { dependsOn(checkGeneratedBindings) }

dependencies {
    // The generated code calls JNA; the aar carries JNA's libjnidispatch.so for every ABI
    // (the plain jar has only desktop natives). `api`: JNA types appear in the bindings' API.
    api("net.java.dev.jna:jna:5.17.0@aar")
    // @RequiresApi in the android = true cleaner.
    implementation("androidx.annotation:annotation:1.9.1")
}
