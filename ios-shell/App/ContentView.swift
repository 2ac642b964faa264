import PocketKeyKit
import SwiftUI

struct ContentView: View {
    @EnvironmentObject private var model: AppModel
    @State private var scanning = false

    var body: some View {
        NavigationStack {
            List {
                if !model.prompts.isEmpty {
                    Section("Waiting for you") {
                        ForEach(model.prompts, id: \.id) { prompt in
                            PromptRow(prompt: prompt)
                        }
                    }
                }
                if let info = model.info {
                    Section("This security key") {
                        LabeledContent("Name", value: info.label)
                        LabeledContent("Passkeys", value: String(info.credentialCount))
                        LabeledContent("PIN", value: info.pinSet ? "Set" : "Not set")
                    }
                }
                ForEach(model.sites, id: \.rpId) { site in
                    Section(site.rpName ?? site.rpId) {
                        ForEach(site.passkeys, id: \.credentialId) { passkey in
                            Text(passkey.userDisplayName ?? passkey.userName ?? "Passkey")
                        }
                        .onDelete { offsets in
                            offsets.map { site.passkeys[$0] }.forEach(model.delete)
                        }
                    }
                }
            }
            .navigationTitle("PocketKey")
            .toolbar {
                Button("Scan") { scanning = true }
            }
            .sheet(isPresented: $scanning) {
                ScanView { text, source in
                    scanning = false
                    model.handleScan(text, source: source)
                }
            }
            .alert(model.message ?? "", isPresented: Binding(
                get: { model.message != nil }, set: { if !$0 { model.message = nil } }
            )) {
                Button("OK", role: .cancel) {}
            }
        }
    }
}

/// One open prompt, answered in the app (the notification's buttons do the same by id).
struct PromptRow: View {
    @EnvironmentObject private var model: AppModel
    let prompt: ApprovalPrompt

    var body: some View {
        VStack(alignment: .leading, spacing: 6) {
            Text(prompt.rpId ?? "Use this security key").font(.headline)
            if let user = prompt.userDisplayName ?? prompt.userName {
                Text(user)
            }
            Text("Requested by \(prompt.requester)").font(.caption).foregroundStyle(.secondary)
            if prompt.accounts.isEmpty {
                HStack {
                    Button("Deny", role: .destructive) { Task { await model.answer(id: prompt.id, approve: false) } }
                    Spacer()
                    Button("Approve") { Task { await model.answer(id: prompt.id, approve: true) } }
                }
                .buttonStyle(.borderless)
            } else {
                // Several passkeys fit: the user picks one (its index answers the prompt).
                ForEach(Array(prompt.accounts.enumerated()), id: \.offset) { index, account in
                    Button(account.displayName ?? account.userName ?? "Account \(index + 1)") {
                        Task { await model.answer(id: prompt.id, approve: true, account: UInt32(index)) }
                    }
                }
                Button("Deny", role: .destructive) { Task { await model.answer(id: prompt.id, approve: false) } }
            }
        }
    }
}
