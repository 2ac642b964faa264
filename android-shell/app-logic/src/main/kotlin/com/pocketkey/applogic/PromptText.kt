package com.pocketkey.applogic

import com.pocketkey.core.ApprovalOperation
import com.pocketkey.core.ApprovalPrompt
import com.pocketkey.core.OnBehalf

/**
 * What the notification and the approval sheet say about a prompt. A registration an
 * organisation asks for on the user's behalf ([onBehalf] set) reads differently from a
 * computer's request: it names the organisation, the site and the account.
 */
data class PromptText(val title: String, val detail: String, val onBehalf: OnBehalf?) {
    companion object {
        fun of(p: ApprovalPrompt): PromptText {
            val site = p.rpId ?: "a site"
            p.onBehalf?.let {
                return PromptText(
                    "${it.organisation} asks to register this key with $site for ${it.account}?",
                    "A registration on your behalf · approve only if you expect it",
                    it,
                )
            }
            val title = when (p.operation) {
                ApprovalOperation.REGISTER -> "Create a passkey for $site?"
                ApprovalOperation.SIGN_IN, ApprovalOperation.U2F_SIGN_IN -> "Sign in to $site?"
                ApprovalOperation.U2F_REGISTER -> "Register this key with $site?"
                ApprovalOperation.VERIFY_USER -> "Confirm it's you"
                ApprovalOperation.SELECT -> "Use this security key?"
                ApprovalOperation.RESET -> "Erase this security key?"
            }
            return PromptText(title, listOfNotNull(p.requester, p.userName ?: p.userDisplayName).joinToString(" · "), null)
        }
    }
}
