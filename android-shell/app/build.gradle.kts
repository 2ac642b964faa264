// The thin PocketKey app: camera/deep-link entry point, approval notifications with a
// biometric prompt, FCM wake-ups, the BLE advert, the master key kept under an Android Keystore
// key. The app model is :app-logic, the engine :pocketkey-core. Not built in CI (no Android SDK there): see ../README.md.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// FCM needs the Firebase project's google-services.json next to this file (not committed).
if (file("google-services.json").exists()) apply(plugin = "com.google.gms.google-services")

android {
    namespace = "com.pocketkey.app"
    compileSdk = 35

    defaultConfig {
        applicationId = "com.pocketkey.app"
        minSdk = 28
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        // The organisation server's host for App Links (AndroidManifest.xml): its
        // /.well-known/assetlinks.json must name this package and signing certificate.
        // gradle -Ppocketkey.orgHost=keys.acme.example …
        manifestPlaceholders["orgHost"] =
            (project.findProperty("pocketkey.orgHost") as String?) ?: "keys.example.com"
    }

    buildTypes {
        release {
            isMinifyEnabled = true
            // pocketkey-core's consumer-rules.pro keeps what JNA and the bindings reflect on.
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"))
        }
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
    implementation(project(":app-logic"))
    implementation("androidx.appcompat:appcompat:1.7.0")   // AppCompatActivity is a FragmentActivity
    implementation("androidx.core:core-ktx:1.15.0")          // NotificationCompat
    implementation("androidx.biometric:biometric:1.1.0")     // BiometricPrompt
    // Google code scanner: QR scanning UI in Play services, no camera permission in this app.
    implementation("com.google.android.gms:play-services-code-scanner:16.1.0")
    implementation("com.google.firebase:firebase-messaging:24.1.0")   // FCM wake-ups
}
