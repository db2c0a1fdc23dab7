// A real OpenID Connect provider (oidc-provider, a certified implementation)
// for the connectors crate's tests. Started by the Rust test harness
// (tests/support/oidc.rs); not a fake: discovery, JWKS, authorization
// endpoint with PKCE, token endpoint, ID tokens and JWT access tokens are
// all oidc-provider's own.
//
// What the tests need on top of a stock provider, and nothing else:
// - it listens on 127.0.0.1:0 and prints one line `READY <json>` with the
//   issuer, the test clients and the signing key id;
// - the interaction (login + consent) page signs in a test user at once
//   (`login_hint` picks which), so a plain HTTP client can run the flow;
// - POST /admin/rotate replaces the signing key with a new one, keeping the
//   old one in the JWKS, and prints the new key id;
// - it exits when its stdin closes, so it never outlives the test process.
//
// Clients: `collab-web` (confidential, client_secret_basic) and
// `collab-spa` (public, PKCE only), both redirecting to
// http://127.0.0.1:9/auth/callback (never contacted: the test stops at the
// redirect). Access tokens are JWTs for the resource `urn:collab:api`.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const RESOURCE = 'urn:collab:api';
const REDIRECT_URI = 'http://127.0.0.1:9/auth/callback';

const ACCOUNTS = {
  alice: {
    email: 'alice@example.test',
    email_verified: true,
    name: 'Alice Admin',
    groups: ['eng-admins', 'staff'],
  },
  bob: {
    email: 'bob@example.test',
    email_verified: true,
    name: 'Bob Builder',
    groups: ['staff'],
  },
};

function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

function configuration(keys) {
  return {
    clients: [
      {
        client_id: 'collab-web',
        client_secret: 'collab-web-secret',
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'collab-spa',
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      },
    ],
    jwks: { keys },
    cookies: { keys: ['connectors-test-cookie-key'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // Claims go into the ID token itself, as Azure AD and Okta put groups
    // there, not only behind the userinfo endpoint.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) throw new Error(`unknown resource ${resourceIndicator}`);
          return {
            scope: 'api',
            audience: RESOURCE,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async findAccount(_ctx, sub) {
      const account = ACCOUNTS[sub];
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, ...account };
        },
      };
    },
    // JWT access tokens carry the groups too, like Okta's and Azure AD's.
    async extraTokenClaims(_ctx, token) {
      const account = ACCOUNTS[token.accountId];
      return account ? { groups: account.groups } : undefined;
    },
  };
}

const keys = [newSigningKey()];
let provider;

const server = http.createServer(async (req, res) => {
  try {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    if (pathname.startsWith('/interaction/')) {
      await interact(req, res);
    } else if (pathname === '/admin/rotate' && req.method === 'POST') {
      await rotate(res);
    } else {
      provider.callback()(req, res);
    }
  } catch (err) {
    console.error('provider.mjs:', err);
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'text/plain' });
    }
    res.end(String(err));
  }
});

// The login page and the consent page, answered at once for the test user.
async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const accountId = params.login_hint || 'alice';
    await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.writeHead(400, { 'content-type': 'text/plain' });
  res.end(`unexpected prompt ${prompt.name}`);
}

// A new signing key first (oidc-provider signs with the first key that fits),
// the old ones kept in the JWKS so tokens they signed still verify. The
// Provider is rebuilt with the new key set: configuration is fixed per
// instance. State (sessions, grants, codes) lives in oidc-provider's default
// in-memory adapter, which is shared by every instance in this process.
async function rotate(res) {
  keys.unshift(newSigningKey());
  provider = build();
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ kid: keys[0].kid, kids: keys.map((k) => k.kid) }));
}

let issuer;
function build() {
  const p = new Provider(issuer, configuration(keys));
  p.on('server_error', (_ctx, err) => console.error('provider.mjs server_error:', err));
  return p;
}

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  provider = build();
  process.stdout.write(
    `READY ${JSON.stringify({ issuer, resource: RESOURCE, redirect_uri: REDIRECT_URI, kid: keys[0].kid })}\n`,
  );
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
