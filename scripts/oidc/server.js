// An OpenID provider (oidc-provider) for tower-mcp-auth's tests, on 127.0.0.1 with an ephemeral port:
//
//   node server.js ISSUER_FILE
//
// writes its issuer URL to ISSUER_FILE once it listens. It issues, per RFC 8707 resource indicator, JWT access
// tokens (ES256, `aud` = the resource) to client-credentials clients, opaque ones for resources starting with
// `urn:opaque:`, introspects them (RFC 7662), and exchanges them (RFC 8693, registered through
// `provider.registerGrantType`) for a token of another resource.
//
// oidc-provider 8.x is the line that supports Node.js 20 (the 9.x line asks for Node.js 22 and warns on 20).
//
// Clients: `mcp-client` (client_credentials; the MCP client of the tests), `gateway` (token exchange and
// introspection, client_secret_basic) and `gateway-post` (the same, client_secret_post). Secrets are
// `<client_id>-secret`.
//
// Test controls, on the same port:
//   POST /admin/rotate   a new signing key first in the JWKS (new tokens carry its kid); answers {"kid": ...}
//   POST /admin/revoke   body: a subject token; exchanging it is refused from then on (invalid_grant)
//   POST /admin/fail     body: a status (e.g. 500); every exchange answers it until POST /admin/fail with 0
//   GET  /admin/stats    {"exchanges": n, "jwks_fetches": m}: exchange requests that reached the grant, and
//                        requests for the JWKS
import { createServer } from 'node:http';
import { renameSync, writeFileSync } from 'node:fs';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const issuerFile = process.argv[2];
if (!issuerFile) {
  console.error('usage: node server.js ISSUER_FILE');
  process.exit(2);
}

// The subject (`sub`) each exchanged token was exchanged from.
const exchangedFrom = new WeakMap();

const state = {
  keys: [],
  exchanges: 0,
  jwksFetches: 0,
  failWith: 0,
  revoked: new Set(),
};

async function signingKey(kid) {
  const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
}

function resourceServerInfo(resource) {
  return {
    scope: 'mcp',
    audience: resource,
    accessTokenTTL: 300,
    accessTokenFormat: resource.startsWith('urn:opaque:') ? 'opaque' : 'jwt',
    jwt: { sign: { alg: 'ES256' } },
  };
}

function client(clientId, grantTypes, method) {
  return {
    client_id: clientId,
    client_secret: `${clientId}-secret`,
    grant_types: grantTypes,
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: method,
    // The provider signs with EC keys only; the default RS256 would need an RSA key.
    id_token_signed_response_alg: 'ES256',
  };
}

function build(issuer) {
  const provider = new Provider(issuer, {
    clients: [
      client('mcp-client', ['client_credentials'], 'client_secret_basic'),
      client('gateway', ['client_credentials', TOKEN_EXCHANGE], 'client_secret_basic'),
      client('gateway-post', [TOKEN_EXCHANGE], 'client_secret_post'),
    ],
    jwks: { keys: state.keys },
    scopes: ['mcp'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => resourceServerInfo(resource),
      },
    },
    formats: {
      customizers: {
        // An exchanged token names the subject it was exchanged from, and the gateway as actor (RFC 8693 §4.1).
        jwt(_ctx, token, jwt) {
          const subject = exchangedFrom.get(token);
          if (subject !== undefined) {
            jwt.payload.sub = subject;
            jwt.payload.act = { sub: token.clientId };
          }
        },
      },
    },
  });
  const publicKeys = jose.createLocalJWKSet({
    keys: state.keys.map(({ d, ...publicKey }) => publicKey),
  });

  async function exchange(ctx) {
    state.exchanges += 1;
    if (state.failWith) {
      ctx.status = state.failWith;
      ctx.body = { error: 'server_error' };
      return;
    }
    const { params, client: gateway } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported subject_token_type');
    }
    if (state.revoked.has(params.subject_token)) {
      throw new errors.InvalidGrant('the subject token is revoked');
    }
    let subject;
    try {
      ({ payload: subject } = await jose.jwtVerify(params.subject_token, publicKeys, { issuer }));
    } catch {
      throw new errors.InvalidGrant('the subject token is not valid');
    }
    const resources = [params.resource].flat().filter(Boolean);
    if (resources.length !== 1) {
      throw new errors.InvalidTarget('exactly one resource is required');
    }
    const token = new provider.ClientCredentials({
      client: gateway,
      scope: 'mcp',
    });
    exchangedFrom.set(token, subject.sub);
    token.resourceServer = new provider.ResourceServer(resources[0], resourceServerInfo(resources[0]));
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  }

  provider.registerGrantType(
    TOKEN_EXCHANGE,
    exchange,
    ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type'],
    ['resource', 'audience'],
  );
  return provider.callback();
}

async function body(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

const server = createServer();
server.listen(0, '127.0.0.1', async () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  state.keys = [await signingKey('k1')];
  let handle = build(issuer);
  server.on('request', async (req, res) => {
    if (!req.url.startsWith('/admin/')) {
      if (req.url === '/jwks') state.jwksFetches += 1;
      handle(req, res);
      return;
    }
    if (req.method === 'POST' && req.url === '/admin/rotate') {
      const kid = `k${state.keys.length + 1}`;
      state.keys = [await signingKey(kid), ...state.keys];
      handle = build(issuer);
      json(res, 200, { kid });
    } else if (req.method === 'POST' && req.url === '/admin/revoke') {
      state.revoked.add((await body(req)).trim());
      json(res, 200, {});
    } else if (req.method === 'POST' && req.url === '/admin/fail') {
      state.failWith = Number((await body(req)).trim()) || 0;
      json(res, 200, {});
    } else if (req.method === 'GET' && req.url === '/admin/stats') {
      json(res, 200, { exchanges: state.exchanges, jwks_fetches: state.jwksFetches });
    } else {
      json(res, 404, { error: 'not_found' });
    }
  });
  // Written whole, then renamed: whoever waits for the file never reads half a URL.
  writeFileSync(`${issuerFile}.tmp`, issuer);
  renameSync(`${issuerFile}.tmp`, issuerFile);
});
