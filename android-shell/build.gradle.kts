// Plugin versions for both modules. AGP 8.7 needs Gradle 8.9+ (gradle/wrapper) and JDK 17.
plugins {
    id("com.android.application") version "8.7.3" apply false
    id("com.android.library") version "8.7.3" apply false
    // Keep equal to kotlin_target_version in uniffi-android.toml.
    id("org.jetbrains.kotlin.android") version "2.1.0" apply false
    // FCM: applied by :app only when its google-services.json is there.
    id("com.google.gms.google-services") version "4.4.2" apply false
}
