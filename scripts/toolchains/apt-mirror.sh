#!/usr/bin/env bash
# The Debian mirror this machine's apt is configured with, for debootstrap (swift.sh): a chroot
# built from the same mirror works wherever the host's apt works (a local mirror, a proxy, a
# network that reaches only one host), and the scripts name no host of their own.
#
#   scripts/toolchains/apt-mirror.sh [APT_DIR [CODENAME]]
#
# Reads the enabled `deb` entries of APT_DIR (default /etc/apt): sources.list and
# sources.list.d/*.list (one-line form), sources.list.d/*.sources (deb822 form). Prints
#   MIRROR=<URI of the entry for the suite CODENAME>
#   SECURITY_MIRROR=<URI of the entry for CODENAME-security, or empty if there is none>
# CODENAME defaults to VERSION_CODENAME from /etc/os-release (e.g. bookworm). Exits 1, saying
# why on stderr, when no entry names CODENAME (not a Debian host, or apt has no Debian source).
set -euo pipefail

APT_DIR=${1:-/etc/apt}
CODENAME=${2:-}
if [ -z "$CODENAME" ] && [ -r /etc/os-release ]; then
    CODENAME=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
fi
[ -n "$CODENAME" ] || { echo "apt-mirror.sh: no VERSION_CODENAME in /etc/os-release" >&2; exit 1; }

# "URI SUITE" for every enabled deb entry, in apt's reading order.
entries() {
    local f
    for f in "$APT_DIR/sources.list" "$APT_DIR"/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] uri suite component...; options may hold spaces inside the brackets.
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
    done
    for f in "$APT_DIR"/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 stanzas: blank-line separated; Types, URIs, Suites hold space-separated lists.
        awk '
            function flush(   i, j, nu, ns, u, s, deb) {
                deb = 0
                n = split(types, t, " ")
                for (i = 1; i <= n; i++) if (t[i] == "deb") deb = 1
                if (deb && tolower(enabled) != "no") {
                    nu = split(uris, u, " "); ns = split(suites, s, " ")
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
                }
                types = uris = suites = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1); sub(/:$/, "", key)
                value = $0; sub(/^[^:]*:[ \t]*/, "", value)
                if (key == "types") types = value
                else if (key == "uris") uris = value
                else if (key == "suites") suites = value
                else if (key == "enabled") enabled = value
            }
            END { flush() }
        ' "$f"
    done
}

mirror="" security=""
while read -r uri suite; do
    uri=${uri%/}
    if [ "$suite" = "$CODENAME" ] && [ -z "$mirror" ]; then mirror=$uri; fi
    if [ "$suite" = "$CODENAME-security" ] && [ -z "$security" ]; then security=$uri; fi
done < <(entries)

if [ -z "$mirror" ]; then
    echo "apt-mirror.sh: no enabled deb entry for suite $CODENAME in $APT_DIR" >&2
    exit 1
fi
printf 'MIRROR=%s\nSECURITY_MIRROR=%s\n' "$mirror" "$security"
