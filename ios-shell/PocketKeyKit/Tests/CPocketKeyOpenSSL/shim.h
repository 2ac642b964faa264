// The parts of OpenSSL 3 the tests use: SHA-256, an EC public key from its uncompressed point
// (EVP_PKEY_fromdata), ECDSA verification (EVP_DigestVerify), and a P-256 key pair that signs
// (EVP_EC_gen, EVP_DigestSign) for the software UV key.
#pragma once
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

// EVP_PKEY_PUBLIC_KEY is a macro built from other macros, which Swift does not import.
static inline int pocketkey_evp_pkey_public_key(void) { return EVP_PKEY_PUBLIC_KEY; }

// The parameters of a P-256 public key given as an uncompressed point (0x04 || x || y), for
// EVP_PKEY_fromdata; free with OSSL_PARAM_free. In C because OSSL_PARAM keeps its key names by
// reference (they must be static strings, which Swift's temporary C strings are not) and the
// builder keeps the value buffers by reference until OSSL_PARAM_BLD_to_param.
static inline OSSL_PARAM *pocketkey_p256_public_key_params(const unsigned char *point, size_t length) {
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    if (builder != NULL
        && OSSL_PARAM_BLD_push_utf8_string(builder, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1
        && OSSL_PARAM_BLD_push_octet_string(builder, OSSL_PKEY_PARAM_PUB_KEY, point, length) == 1) {
        params = OSSL_PARAM_BLD_to_param(builder);
    }
    OSSL_PARAM_BLD_free(builder);
    return params;
}

// A new P-256 key pair; free with EVP_PKEY_free. (EVP_EC_gen is a macro over a variadic
// function, which Swift cannot call.)
static inline EVP_PKEY *pocketkey_p256_generate(void) { return EVP_EC_gen("P-256"); }

// The uncompressed public point (65 bytes) of a P-256 key into `out`; 1 on success.
static inline int pocketkey_p256_public_point(const EVP_PKEY *key, unsigned char *out, size_t out_len) {
    size_t length = 0;
    return EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, out, out_len, &length) == 1
        && length == 65 && out[0] == 0x04;
}
