-- Optional: revocations of LiteLLM keys as PostgreSQL notifications, for
-- `tower_mcp_auth::validators::LiteLlmRevocations::listen("litellm_key_revoked")`.
--
-- tower-mcp-auth never installs this: it adds a function and four triggers to the schema LiteLLM owns, which
-- is the operator's decision. Without it, revocations are found by polling, within the configured bound (2 s by
-- default); with it, they reach every listening replica as soon as the revoking transaction commits. Polling
-- goes on either way, and a replica flushes its cache whenever its listening connection is (re)established, so a
-- notification lost while it was disconnected cannot leave a revoked key admitted.
--
-- Install (as a role that may create triggers on LiteLLM's tables), in LiteLLM's schema:
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/litellm_revocation_notify.sql
-- Remove:
--     DROP TRIGGER IF EXISTS tower_mcp_auth_key_changed ON "LiteLLM_VerificationToken";
--     DROP TRIGGER IF EXISTS tower_mcp_auth_key_removed ON "LiteLLM_VerificationToken";
--     DROP TRIGGER IF EXISTS tower_mcp_auth_key_deleted ON "LiteLLM_DeletedVerificationToken";
--     DROP TRIGGER IF EXISTS tower_mcp_auth_key_deprecated ON "LiteLLM_DeprecatedVerificationToken";
--     DROP FUNCTION IF EXISTS tower_mcp_auth_notify_key_revoked();
-- Prisma migrations of LiteLLM leave triggers they do not know about in place; re-run this file after a
-- migration that recreates one of these tables.
--
-- The payload is the key's `token` column (the hex SHA-256 of the key, never the key). Notifications are
-- delivered at commit, and not at all for a rolled-back transaction. The end of a rotated key's grace period
-- (`revoke_at` passing) is not an event the database sees: polling finds it.

BEGIN;

CREATE OR REPLACE FUNCTION tower_mcp_auth_notify_key_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- The old token: after a rotation (the row takes the new key's token) it is the one that is revoked.
        PERFORM pg_notify('litellm_key_revoked', OLD.token);
        RETURN NEW;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('litellm_key_revoked', OLD.token);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('litellm_key_revoked', NEW.token);
    RETURN NEW;
END;
$$;

-- Only the changes that can take a key's admission away, so spend accounting does not notify on every request:
-- a rotation, a block, expiry, budget (and the moment spend reaches it), models, permissions, ownership.
DROP TRIGGER IF EXISTS tower_mcp_auth_key_changed ON "LiteLLM_VerificationToken";
CREATE TRIGGER tower_mcp_auth_key_changed
    AFTER UPDATE ON "LiteLLM_VerificationToken"
    FOR EACH ROW
    WHEN (
        OLD.token IS DISTINCT FROM NEW.token
        OR OLD.blocked IS DISTINCT FROM NEW.blocked
        OR OLD.expires IS DISTINCT FROM NEW.expires
        OR OLD.max_budget IS DISTINCT FROM NEW.max_budget
        OR (NEW.max_budget IS NOT NULL AND NEW.spend >= NEW.max_budget AND OLD.spend < NEW.max_budget)
        OR OLD.models IS DISTINCT FROM NEW.models
        OR OLD.permissions IS DISTINCT FROM NEW.permissions
        OR OLD.object_permission_id IS DISTINCT FROM NEW.object_permission_id
        OR OLD.allowed_routes IS DISTINCT FROM NEW.allowed_routes
        OR OLD.user_id IS DISTINCT FROM NEW.user_id
        OR OLD.team_id IS DISTINCT FROM NEW.team_id
        OR OLD.organization_id IS DISTINCT FROM NEW.organization_id
    )
    EXECUTE FUNCTION tower_mcp_auth_notify_key_revoked();

DROP TRIGGER IF EXISTS tower_mcp_auth_key_removed ON "LiteLLM_VerificationToken";
CREATE TRIGGER tower_mcp_auth_key_removed
    AFTER DELETE ON "LiteLLM_VerificationToken"
    FOR EACH ROW EXECUTE FUNCTION tower_mcp_auth_notify_key_revoked();

DROP TRIGGER IF EXISTS tower_mcp_auth_key_deleted ON "LiteLLM_DeletedVerificationToken";
CREATE TRIGGER tower_mcp_auth_key_deleted
    AFTER INSERT ON "LiteLLM_DeletedVerificationToken"
    FOR EACH ROW EXECUTE FUNCTION tower_mcp_auth_notify_key_revoked();

DROP TRIGGER IF EXISTS tower_mcp_auth_key_deprecated ON "LiteLLM_DeprecatedVerificationToken";
CREATE TRIGGER tower_mcp_auth_key_deprecated
    AFTER INSERT ON "LiteLLM_DeprecatedVerificationToken"
    FOR EACH ROW EXECUTE FUNCTION tower_mcp_auth_notify_key_revoked();

COMMIT;

-- Optional, for large key tables: lets the watcher's poll find changed rows without a scan.
-- CREATE INDEX CONCURRENTLY IF NOT EXISTS "LiteLLM_VerificationToken_updated_at_idx"
--     ON "LiteLLM_VerificationToken" ("updated_at");
