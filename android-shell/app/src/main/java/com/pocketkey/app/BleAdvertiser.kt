package com.pocketkey.app

import android.Manifest
import android.bluetooth.BluetoothManager
import android.bluetooth.le.AdvertiseCallback
import android.bluetooth.le.AdvertiseData
import android.bluetooth.le.AdvertiseSettings
import android.content.Context
import android.content.pm.PackageManager
import android.os.Build
import android.os.ParcelUuid
import com.pocketkey.core.Advertiser
import com.pocketkey.core.AdvertiserException

/**
 * The hybrid BLE advert (CTAP 2.2, hybrid transport): the engine's 20 encrypted bytes as
 * service data of FIDO's 16-bit UUID 0xFFF9, at the fastest interval, without the device name
 * (it would identify the phone to every scanner nearby). Needs BLUETOOTH_ADVERTISE from API 31.
 */
class BleAdvertiser(private val context: Context) : Advertiser {
    @Volatile private var callback: AdvertiseCallback? = null

    override fun start(serviceData: ByteArray) {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S &&
            context.checkSelfPermission(Manifest.permission.BLUETOOTH_ADVERTISE) != PackageManager.PERMISSION_GRANTED
        ) {
            throw AdvertiserException.Failed("the Nearby devices permission is not granted")
        }
        val adapter = context.getSystemService(BluetoothManager::class.java)?.adapter
        if (adapter == null || !adapter.isEnabled) throw AdvertiserException.Failed("Bluetooth is off")
        val advertiser = adapter.bluetoothLeAdvertiser
            ?: throw AdvertiserException.Failed("this phone cannot send Bluetooth adverts")
        val settings = AdvertiseSettings.Builder()
            .setAdvertiseMode(AdvertiseSettings.ADVERTISE_MODE_LOW_LATENCY)
            .setTxPowerLevel(AdvertiseSettings.ADVERTISE_TX_POWER_HIGH)
            .setConnectable(false)
            .setTimeout(0)   // the engine stops it
            .build()
        val data = AdvertiseData.Builder()
            .setIncludeDeviceName(false)
            .setIncludeTxPowerLevel(false)
            .addServiceData(FIDO_UUID, serviceData)
            .build()
        val cb = object : AdvertiseCallback() {}
        callback = cb
        try {
            advertiser.startAdvertising(settings, data, cb)
        } catch (e: SecurityException) {
            callback = null
            throw AdvertiserException.Failed("the Nearby devices permission was revoked")
        }
    }

    override fun stop() {
        val cb = callback ?: return
        callback = null
        try {
            context.getSystemService(BluetoothManager::class.java)?.adapter?.bluetoothLeAdvertiser?.stopAdvertising(cb)
        } catch (e: SecurityException) {
            // Permission revoked meanwhile: the system stops the app's adverts itself.
        }
    }

    private companion object {
        val FIDO_UUID: ParcelUuid = ParcelUuid.fromString("0000fff9-0000-1000-8000-00805f9b34fb")
    }
}
