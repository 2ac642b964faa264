package com.pocketkey.app

import android.os.Bundle
import android.text.InputType
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.LinearLayout
import android.widget.ListView
import android.widget.Toast
import androidx.appcompat.app.AlertDialog
import androidx.appcompat.app.AppCompatActivity
import com.pocketkey.applogic.KeySession
import com.pocketkey.applogic.Outcome
import com.pocketkey.core.PairingInfo

/**
 * The pairing list (rename, unpair, resume a suspended computer) and the PIN (set, change).
 * Glue only: every action is the model's (`Pairings`, `KeySettings`), run off the main
 * thread; this screen shows the list and the model's sentences.
 */
class ManageActivity : AppCompatActivity() {
    private val app get() = application as PocketKeyApp
    private lateinit var list: ListView
    private lateinit var pin: Button
    private var pairings: List<PairingInfo> = emptyList()
    @Volatile private var pinSet = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        list = ListView(this)
        pin = Button(this).apply { setOnClickListener { askPin() } }
        setContentView(LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(48, 48, 48, 48)
            addView(pin)
            addView(list)
        })
        list.setOnItemClickListener { _, _, position, _ -> pairings.getOrNull(position)?.let { choose(it) } }
    }

    override fun onResume() {
        super.onResume()
        reload()
    }

    private fun reload() = background { session ->
        val listed = session.pairings.list()
        pinSet = (session.keySettings.info() as? Outcome.Done)?.value?.pinSet ?: false
        runOnUiThread {
            pin.text = if (pinSet) "Change PIN" else "Set a PIN"
            when (listed) {
                is Outcome.Done -> {
                    pairings = listed.value
                    list.adapter = ArrayAdapter(
                        this, android.R.layout.simple_list_item_1,
                        pairings.map { if (it.suspended) "${it.computerName} (removed by the computer)" else it.computerName },
                    )
                }
                is Outcome.Error -> toast(listed.message)
            }
        }
    }

    private fun choose(pairing: PairingInfo) {
        val actions = buildList {
            add("Rename" to { rename(pairing) })
            if (pairing.suspended) add("Use again" to { act { it.pairings.resume(pairing.id) } })
            add("Unpair" to { confirmUnpair(pairing) })
        }
        AlertDialog.Builder(this)
            .setTitle(pairing.computerName)
            .setItems(actions.map { it.first }.toTypedArray()) { _, which -> actions[which].second() }
            .show()
    }

    private fun rename(pairing: PairingInfo) {
        val name = EditText(this).apply { setText(pairing.computerName) }
        AlertDialog.Builder(this)
            .setTitle("Rename")
            .setView(name)
            .setPositiveButton("Save") { _, _ -> act { it.pairings.rename(pairing.id, name.text.toString()) } }
            .setNegativeButton("Cancel", null)
            .show()
    }

    private fun confirmUnpair(pairing: PairingInfo) {
        AlertDialog.Builder(this)
            .setTitle("Unpair ${pairing.computerName}?")
            .setMessage("It can no longer ask this phone to sign in until you pair again.")
            .setPositiveButton("Unpair") { _, _ -> act { it.pairings.unpair(pairing.id) } }
            .setNegativeButton("Cancel", null)
            .show()
    }

    /** Current PIN (only when one is set) and the new one; the model checks both. */
    private fun askPin() {
        val change = pinSet
        fun field(hint: String) = EditText(this).apply {
            this.hint = hint
            inputType = InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_VARIATION_PASSWORD
        }
        val current = field("Current PIN")
        val new = field("New PIN")
        AlertDialog.Builder(this)
            .setTitle(pin.text)
            .setView(LinearLayout(this).apply {
                orientation = LinearLayout.VERTICAL
                if (change) addView(current)
                addView(new)
            })
            .setPositiveButton("Save") { _, _ ->
                val old = if (change) current.text.toString() else null
                act { it.keySettings.setPin(old, new.text.toString()) }
            }
            .setNegativeButton("Cancel", null)
            .show()
    }

    /** Runs a model action in the background, shows its error sentence, then reloads. */
    private fun act(action: (KeySession) -> Outcome<*>) = background { session ->
        val result = action(session)
        runOnUiThread { if (result is Outcome.Error) toast(result.message) }
        reload()
    }

    private fun background(block: (KeySession) -> Unit) {
        val session = app.model.session ?: return toast("The security key is not open yet")
        app.background.execute { block(session) }
    }

    private fun toast(message: String) = Toast.makeText(this, message, Toast.LENGTH_LONG).show()
}
