import PocketKeyKit
import SwiftUI

struct ContentView: View {
    @EnvironmentObject private var app: AppModel
    @State private var scanning = false

    var body: some View {
        NavigationStack {
            Group {
                switch app.state.phase {
                case .starting:
                    ProgressView("Opening the security key…")
                case .ready:
                    HomeList(scanning: $scanning)
                case let .keyUnavailable(message):
                    Recovery(message: message, action: "Try again") { Task { await app.model.start() } }
                case let .needsReset(message):
                    Recovery(message: message, action: "Reset the security key", destructive: true) {
                        app.perform { try await $0.resetStorage() }
                    }
                case let .failed(message):
                    Recovery(message: message, action: "Try again") { Task { await app.model.start() } }
                }
            }
            .navigationTitle("PocketKey")
            .toolbar {
                Button("Scan") { scanning = true }.disabled(app.state.phase != .ready)
                NavigationLink("Settings") { SettingsView() }
            }
            .sheet(isPresented: $scanning) {
                ScanView { text, source in
                    scanning = false
                    app.scan(text, source: source)
                }
            }
            .sheet(item: Binding(get: { app.state.pairing.map(PairingSheet.init) }, set: { _ in })) { sheet in
                sheet
            }
            .alert(app.state.notice ?? app.error ?? "", isPresented: Binding(
                get: { app.state.notice != nil || app.error != nil },
                set: { if !$0 { app.dismissNotice(); app.error = nil } }
            )) {
                Button("OK", role: .cancel) {}
            }
        }
    }
}

/// The confirmation code of a pairing under way: the computer's user compares it.
struct PairingSheet: View, Identifiable {
    let progress: AppState.PairingProgress
    init(_ progress: AppState.PairingProgress) { self.progress = progress }
    var id: String { if case let .confirm(code) = progress { return code } else { return "connecting" } }

    var body: some View {
        VStack(spacing: 16) {
            switch progress {
            case .connecting:
                ProgressView("Reaching your computer…")
            case let .confirm(code):
                Text("Check that your computer shows").font(.headline)
                Text(code).font(.system(size: 44, weight: .bold, design: .monospaced))
                Text("then confirm on the computer.").foregroundStyle(.secondary)
            }
        }
        .padding()
        .interactiveDismissDisabled()
    }
}

struct Recovery: View {
    let message: String
    let action: String
    var destructive = false
    let run: () -> Void
    @State private var confirming = false

    var body: some View {
        VStack(spacing: 20) {
            Text(message).multilineTextAlignment(.center)
            Button(action, role: destructive ? .destructive : nil) {
                if destructive { confirming = true } else { run() }
            }
            .buttonStyle(.borderedProminent)
        }
        .padding()
        .confirmationDialog("Erase the passkeys that cannot be read?", isPresented: $confirming) {
            Button(action, role: .destructive, action: run)
        }
    }
}

struct HomeList: View {
    @EnvironmentObject private var app: AppModel
    @Binding var scanning: Bool
    @State private var renaming: PairingInfo?
    @State private var newName = ""

    var body: some View {
        List {
            // The OS invalidated the UV key (Face ID / Touch ID changed): verified approvals are
            // declined until the user verifies once more and a new key is registered.
            if app.state.uvKeyNeedsRenewal {
                Section("Verification") {
                    Text("Face ID or Touch ID changed, so PocketKey cannot verify you yet.")
                    Button("Set up verification again") { app.perform { _ = try await $0.renewUvKey() } }
                }
            }
            if !app.state.prompts.isEmpty {
                Section("Waiting for you") {
                    ForEach(app.state.prompts, id: \.id) { prompt in
                        PromptRows(prompt: prompt)
                    }
                }
            }
            // The organisation (activation link, then each sync): who manages the key, or why
            // its sites are refused.
            if let organisation = app.state.organisation {
                Section("Organisation") {
                    Text(organisation.name).font(.headline)
                    Text(organisation.message)
                        .foregroundStyle(organisation.status == .active ? Color.secondary : Color.red)
                }
            }
            Section("Computers") {
                if app.state.pairings.isEmpty {
                    Button("Pair with a computer…") { scanning = true }
                }
                ForEach(app.state.pairings, id: \.id) { pairing in
                    VStack(alignment: .leading) {
                        Text(pairing.computerName)
                        if pairing.suspended {
                            Text("Removed on the computer? Resume or unpair it.").font(.caption).foregroundStyle(.orange)
                        }
                    }
                    .swipeActions {
                        Button("Unpair", role: .destructive) { app.perform { try await $0.unpair(pairing.id) } }
                        Button("Rename") { newName = pairing.computerName; renaming = pairing }
                        if pairing.suspended {
                            Button("Resume") { app.perform { try await $0.resumePairing(pairing.id) } }
                        }
                    }
                }
            }
            ForEach(app.state.sites, id: \.rpId) { site in
                Section(site.rpName ?? site.rpId) {
                    ForEach(site.passkeys, id: \.credentialId) { passkey in
                        Text(passkey.userDisplayName ?? passkey.userName ?? "Passkey")
                    }
                    .onDelete { offsets in
                        let doomed = offsets.map { site.passkeys[$0] }
                        app.perform { model in for p in doomed { try await model.deletePasskey(p) } }
                    }
                }
            }
        }
        .refreshable { await app.model.refresh() }
        .task { await app.model.refresh() }
        .alert("Rename", isPresented: Binding(get: { renaming != nil }, set: { if !$0 { renaming = nil } })) {
            TextField("Name", text: $newName)
            Button("Save") {
                if let id = renaming?.id { let name = newName; app.perform { try await $0.renamePairing(id, to: name) } }
            }
            Button("Cancel", role: .cancel) {}
        }
    }
}

/// One open prompt. Every button is its own List row: buttons sharing a row all fire when
/// the row is tapped (choosing an account would also deny the request).
struct PromptRows: View {
    @EnvironmentObject private var app: AppModel
    let prompt: ApprovalPrompt

    var body: some View {
        if let onBehalf = prompt.onBehalf {
            // An organisation registering the key for the user: marked apart from a computer's
            // request, naming the organisation, the site and the account.
            VStack(alignment: .leading, spacing: 4) {
                Label("On behalf of \(onBehalf.organisation)", systemImage: "building.2").font(.caption).foregroundStyle(.orange)
                Text(ApprovalNotification.onBehalfSentence(prompt) ?? "").font(.headline)
            }
        } else {
            VStack(alignment: .leading, spacing: 4) {
                Text(prompt.rpId ?? "Use this security key").font(.headline)
                if let user = prompt.userDisplayName ?? prompt.userName { Text(user) }
                Text("Requested by \(prompt.requester)").font(.caption).foregroundStyle(.secondary)
            }
        }
        if prompt.accounts.isEmpty {
            Button("Approve") { app.respond(to: prompt.id, with: .approve(account: nil)) }
        } else {
            ForEach(Array(prompt.accounts.enumerated()), id: \.offset) { index, account in
                Button("Sign in as \(account.displayName ?? account.userName ?? "account \(index + 1)")") {
                    app.respond(to: prompt.id, with: .approve(account: UInt32(index)))
                }
            }
        }
        Button("Deny", role: .destructive) { app.respond(to: prompt.id, with: .deny) }
    }
}

struct SettingsView: View {
    @EnvironmentObject private var app: AppModel
    @State private var label = ""
    @State private var oldPin = ""
    @State private var newPin = ""
    @State private var confirmingReset = false

    var body: some View {
        Form {
            Section("This phone") {
                TextField("Name shown to computers", text: Binding(
                    get: { app.state.settings.phoneName },
                    set: { name in app.perform { m in try m.updateSettings { $0.phoneName = name } } }))
                Toggle("Stay connected while open", isOn: Binding(
                    get: { app.state.settings.listenInForeground },
                    set: { on in app.perform { m in try m.updateSettings { $0.listenInForeground = on } } }))
                Toggle("Developer mode (unencrypted relays)", isOn: Binding(
                    get: { app.state.settings.allowInsecureRelay },
                    set: { on in app.perform { m in try m.updateSettings { $0.allowInsecureRelay = on } } }))
            }
            if let info = app.state.info {
                Section("Security key") {
                    LabeledContent("Passkeys", value: String(info.credentialCount))
                    LabeledContent("Face ID / passcode", value: info.uvAvailable ? "Used" : "Not set up")
                    TextField(info.label, text: $label)
                    Button("Rename") { let l = label; app.perform { try await $0.setLabel(l) } }
                }
                Section(info.pinSet ? "Change PIN" : "Set a PIN") {
                    if info.pinSet { SecureField("Current PIN", text: $oldPin) }
                    SecureField("New PIN", text: $newPin)
                    Button(info.pinSet ? "Change PIN" : "Set PIN") {
                        let (old, new) = (oldPin, newPin)
                        app.perform { m in
                            if info.pinSet { try await m.changePin(old: old, new: new) } else { try await m.setPin(new) }
                        }
                    }
                }
            }
            Section {
                Button("Erase all passkeys…", role: .destructive) { confirmingReset = true }
            }
        }
        .navigationTitle("Settings")
        .confirmationDialog("Erase every passkey and the PIN?", isPresented: $confirmingReset, titleVisibility: .visible) {
            // The model asks Face ID / the passcode before it erases anything.
            Button("Erase", role: .destructive) { app.perform { _ = try await $0.factoryReset() } }
        } message: {
            Text(app.model.factoryResetWarning)
        }
    }
}
