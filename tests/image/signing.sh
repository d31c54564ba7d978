# Sourced (from the repository's root) by build.sh, publish-chart.sh and the e2e: cosign, the
# key that signs, and the flags that keep cosign off the network. Sets:
#   cosign        the cosign binary (built from its Go module by tests/tools/go-tool.sh)
#   signing_key   what `cosign sign --key` takes: COSIGN_KEY when given (a cosign.key file with
#                 COSIGN_PASSWORD, or a KMS URI such as awskms://... or k8s://NS/NAME), else a
#                 throwaway dev key pair made once under target/cosign-dev/ with an empty password
#   signing_pub   the matching public key (target/signing/cosign.pub), what users verify with
#   cosign_sign   flags for `cosign sign` and `cosign attest` here
#   cosign_verify flags for `cosign verify` and `cosign verify-attestation` here
#   helm_sign     flags for `helm package` that write the chart's Helm provenance (.prov, PGP),
#                 which `helm verify` and `helm install --verify` check: HELM_SIGNING_KEY (a key
#                 name) in HELM_KEYRING (a secret keyring file, unencrypted or with
#                 HELM_PASSPHRASE_FILE) with HELM_PUBLIC_KEYRING, else a dev PGP key made once
#                 under target/helm-dev/
#   helm_pub      the public keyring to verify it with (target/signing/pubring.gpg)
# Keyless signing (Fulcio certificate, Rekor entry) needs the public Sigstore services, which this
# machine cannot reach: the signing config and trusted root below name no service at all, so
# nothing is uploaded to a transparency log and verification must be told not to look for one
# (--insecure-ignore-tlog). docs/install.md says what a release pipeline adds.
cosign=$(tests/tools/go-tool.sh cosign)
mkdir -p target/signing
if [ -n "${COSIGN_KEY:-}" ]; then
  : "${COSIGN_PASSWORD?COSIGN_KEY is set: set COSIGN_PASSWORD too (empty for an unencrypted key)}"
  signing_key=$COSIGN_KEY
  signing_key_kind="COSIGN_KEY"
else
  if [ ! -f target/cosign-dev/cosign.key ]; then
    mkdir -p target/cosign-dev
    (cd target/cosign-dev && COSIGN_PASSWORD='' "$cosign" generate-key-pair >/dev/null 2>&1) \
      || { echo "signing: cosign generate-key-pair failed" >&2; exit 1; }
  fi
  signing_key=$PWD/target/cosign-dev/cosign.key
  signing_key_kind="a throwaway dev key (target/cosign-dev/cosign.key; set COSIGN_KEY to sign with yours)"
  export COSIGN_PASSWORD=''
fi
signing_pub=$PWD/target/signing/cosign.pub
"$cosign" public-key --key "$signing_key" --outfile "$signing_pub" 2>/dev/null \
  || { echo "signing: cannot read the public key of $signing_key (COSIGN_PASSWORD?)" >&2; exit 1; }
[ -f target/signing/signing-config.json ] \
  || "$cosign" signing-config create --out target/signing/signing-config.json >/dev/null
[ -f target/signing/trusted-root.json ] \
  || "$cosign" trusted-root create --out target/signing/trusted-root.json >/dev/null
cosign_sign=(--key "$signing_key" --signing-config "$PWD/target/signing/signing-config.json"
  --trusted-root "$PWD/target/signing/trusted-root.json" --allow-http-registry --yes)
cosign_verify=(--key "$signing_pub" --trusted-root "$PWD/target/signing/trusted-root.json"
  --insecure-ignore-tlog --allow-http-registry)
if [ -n "${HELM_SIGNING_KEY:-}" ]; then
  : "${HELM_KEYRING:?HELM_SIGNING_KEY is set: set HELM_KEYRING (and HELM_PUBLIC_KEYRING) too}"
  helm_sign=(--sign --key "$HELM_SIGNING_KEY" --keyring "$HELM_KEYRING")
  [ -z "${HELM_PASSPHRASE_FILE:-}" ] || helm_sign+=(--passphrase-file "$HELM_PASSPHRASE_FILE")
  cp "${HELM_PUBLIC_KEYRING:?set HELM_PUBLIC_KEYRING to the public key of $HELM_SIGNING_KEY}" target/signing/pubring.gpg
else
  helm_dev=target/helm-dev helm_key_name="kafka-listener-injector dev key <dev@kafka-listener-injector.invalid>"
  if [ ! -f "$helm_dev/secring.gpg" ]; then
    mkdir -p "$helm_dev/gnupg" && chmod 700 "$helm_dev/gnupg"
    # Helm reads the legacy keyring format, RSA keys, no passphrase for a dev key.
    GNUPGHOME=$helm_dev/gnupg gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
      --quick-gen-key "$helm_key_name" rsa3072 sign never 2>/dev/null \
      && GNUPGHOME=$helm_dev/gnupg gpg --batch --export-secret-keys >"$helm_dev/secring.gpg" \
      && GNUPGHOME=$helm_dev/gnupg gpg --batch --export >"$helm_dev/pubring.gpg" \
      || { echo "signing: gpg could not make the dev Helm signing key" >&2; exit 1; }
    GNUPGHOME=$helm_dev/gnupg gpgconf --kill gpg-agent 2>/dev/null || true
  fi
  helm_sign=(--sign --key "$helm_key_name" --keyring "$PWD/$helm_dev/secring.gpg")
  cp "$helm_dev/pubring.gpg" target/signing/pubring.gpg
fi
helm_pub=$PWD/target/signing/pubring.gpg
