-- Alert channel secrets (webhook HMAC keys, Telegram bot tokens) encrypted at
-- rest like exchange keys: AES-256-GCM under a key derived from the control
-- plane's master key, with a fresh nonce per secret and the key's id beside
-- it. The database never sees that key, so this migration cannot encrypt the
-- rows already stored: it keeps their plaintext in `secret` until the
-- control plane seals them at its next start (and clears `secret`). The
-- fingerprint the API shows is stored, so listing channels needs no key.

SET LOCAL ROLE polybot_owner;
ALTER TABLE alert_channels
    ALTER COLUMN secret DROP NOT NULL,
    ADD COLUMN secret_ciphertext  bytea,
    ADD COLUMN secret_nonce       bytea,
    ADD COLUMN secret_key_id      text,
    ADD COLUMN secret_fingerprint text;
UPDATE alert_channels
   SET secret_fingerprint = 'sha256:' || left(encode(sha256(convert_to(secret, 'UTF8')), 'hex'), 12);
ALTER TABLE alert_channels
    ALTER COLUMN secret_fingerprint SET NOT NULL,
    ADD CONSTRAINT alert_channels_secret_kept CHECK (
        secret IS NOT NULL
        OR (secret_ciphertext IS NOT NULL AND secret_nonce IS NOT NULL AND secret_key_id IS NOT NULL));

ALTER TABLE operator_alert_channels
    ALTER COLUMN secret DROP NOT NULL,
    ADD COLUMN secret_ciphertext  bytea,
    ADD COLUMN secret_nonce       bytea,
    ADD COLUMN secret_key_id      text,
    ADD COLUMN secret_fingerprint text;
UPDATE operator_alert_channels
   SET secret_fingerprint = 'sha256:' || left(encode(sha256(convert_to(secret, 'UTF8')), 'hex'), 12);
ALTER TABLE operator_alert_channels
    ALTER COLUMN secret_fingerprint SET NOT NULL,
    ADD CONSTRAINT operator_alert_channels_secret_kept CHECK (
        secret IS NOT NULL
        OR (secret_ciphertext IS NOT NULL AND secret_nonce IS NOT NULL AND secret_key_id IS NOT NULL));

RESET ROLE;
