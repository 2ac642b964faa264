//! uniffi's bindings generator, built from this workspace so that it always matches the
//! uniffi version `pocketkey-ffi` is compiled with. Used by `scripts/build-bindings.sh`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
