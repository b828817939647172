// Test identity provider: the OpenID-certified `oidc-provider` mounted at /realms/<realm>
// with Keycloak's route names and Keycloak-shaped claims. Loopback only, test keys only.
//
// Environment:
//   PORT       port to listen on (0: any free port; the chosen URL is printed)
//   REALM      realm name (default "test")
//   KEYS_FILE  JSON {"keys": [private RSA JWKs with "kid"]}; the first key signs
//
// Test-only control endpoint (what a Keycloak admin does when rotating realm keys):
//   POST /__test/keys {"kids": ["new", "old"]}  publish exactly these keys, first signs.
//
// Differences from Keycloak that the tests design around: JWT access tokens come from
// Resource Indicators (default resource urn:appliance-gateway, aud "appliance-gateway");
// the JWT header typ is "at+jwt"; only opaque tokens can be introspected (request a
// resource ending in ":opaque"); there is no Admin REST API.
import { readFileSync } from 'node:fs';
import express from 'express';
import Provider from 'oidc-provider';

const PORT = Number(process.env.PORT ?? 0);
const REALM = process.env.REALM ?? 'test';
const PREFIX = `/realms/${REALM}`;
const GATEWAY_CLIENT = 'appliance-gateway';
const RESOURCE = 'urn:appliance-gateway';
const allKeys = JSON.parse(readFileSync(process.env.KEYS_FILE, 'utf8')).keys;

// People: username -> password, realm roles, client roles, groups, email.
const USERS = {
  alice: { password: 'alice-pass', realm: ['appliance-user', 'offline_access'], client: ['invoke'],
           groups: ['/teams/research', '/staff'], email: 'alice@example.test' },
  bob:   { password: 'bob-pass', realm: ['offline_access'], client: [], groups: ['/staff'],
           email: 'bob@example.test' },
  carol: { password: 'carol-pass', realm: ['appliance-auditor'], client: [], groups: ['/teams/legal'],
           email: 'carol@example.test' },
  dave:  { password: 'dave-pass', realm: ['appliance-admin', 'appliance-user'], client: [],
           groups: ['/teams/platform'], email: 'dave@example.test' },
  erin:  { password: 'erin-pass', realm: ['appliance-small'], client: [], groups: [],
           email: 'erin@example.test' },
};
// Service accounts (client credentials): client id -> realm roles.
const SERVICES = {
  'svc-batch': { secret: 'svc-batch-secret', realm: ['appliance-user'] },
  'svc-norole': { secret: 'svc-norole-secret', realm: [] },
  [GATEWAY_CLIENT]: { secret: 'gateway-secret', realm: [] },
};
const accountId = (name) => `00000000-0000-4000-8000-${Buffer.from(name).toString('hex').padStart(12, '0')}`;
const byId = Object.fromEntries(Object.keys(USERS).map((name) => [accountId(name), name]));

function keycloakClaims(token) {
  const name = token.accountId ? byId[token.accountId] : undefined;
  if (name) {
    const user = USERS[name];
    return {
      azp: token.clientId, typ: 'Bearer', preferred_username: name, email: user.email,
      groups: user.groups, realm_access: { roles: user.realm },
      resource_access: user.client.length ? { [GATEWAY_CLIENT]: { roles: user.client } } : {},
    };
  }
  const service = SERVICES[token.clientId] ?? { realm: [] };
  return {
    azp: token.clientId, typ: 'Bearer', preferred_username: `service-account-${token.clientId}`,
    realm_access: { roles: service.realm }, resource_access: {},
  };
}

function configuration(keys) {
  return {
    jwks: { keys },
    cookies: { keys: ['test-cookie-key-not-secret'] },
    clients: [
      ...Object.entries(SERVICES).map(([id, s]) => ({
        client_id: id, client_secret: s.secret, grant_types: ['client_credentials'],
        redirect_uris: [], response_types: [],
      })),
      { // the public browser client; native = any loopback port (RFC 8252 §7.3)
        client_id: 'appliance-web', application_type: 'native', token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/auth/callback'],
        post_logout_redirect_uris: ['http://127.0.0.1/auth/logged-out'],
      },
    ],
    pkce: { required: () => true },
    // Keycloak issues a refresh token with every code exchange.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    findAccount: async (ctx, id) => (byId[id] ? {
      accountId: id,
      claims: async () => ({ sub: id, preferred_username: byId[id], email: USERS[byId[id]].email }),
    } : undefined),
    claims: { openid: ['sub'], profile: ['preferred_username'], email: ['email'] },
    interactions: { url: (ctx, interaction) => `${PREFIX}/login-actions/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // Keycloak's confirmation page (ids as in its theme); no external fonts.
        logoutSource: async (ctx, form) => {
          ctx.body = `<!doctype html><html><head><title>Logging out</title></head><body>
<h1>Do you want to log out?</h1>${form}
<button id="kc-logout" type="submit" form="op.logoutForm" value="yes" name="logout">Logout</button>
</body></html>`;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resource) => ({
          audience: resource.startsWith('urn:other') ? 'other-api' : GATEWAY_CLIENT,
          scope: 'openid profile email llm:invoke',
          accessTokenFormat: resource.endsWith(':opaque') ? 'opaque' : 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: async (ctx, token) => keycloakClaims(token),
    ttl: { AccessToken: 300, ClientCredentials: 300, IdToken: 300, Session: 3600, Grant: 3600 },
    routes: {
      authorization: '/protocol/openid-connect/auth',
      token: '/protocol/openid-connect/token',
      jwks: '/protocol/openid-connect/certs',
      userinfo: '/protocol/openid-connect/userinfo',
      introspection: '/protocol/openid-connect/token/introspect',
      revocation: '/protocol/openid-connect/revoke',
      end_session: '/protocol/openid-connect/logout',
    },
  };
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const loginPage = (uid, message = '') => `<!doctype html><html><head><title>Sign in to ${REALM}</title></head>
<body><h1>Sign in to ${escape(REALM)}</h1>${message ? `<p id="input-error">${escape(message)}</p>` : ''}
<form id="kc-form-login" method="post" action="${PREFIX}/login-actions/${escape(uid)}">
<label>Username <input id="username" name="username" autofocus></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="kc-login" type="submit">Sign In</button></form></body></html>`;

let provider;
let handler;
let active = [];
function build(kids) {
  const keys = kids.map((kid) => allKeys.find((k) => k.kid === kid));
  if (keys.some((k) => !k)) throw new Error(`unknown kid in ${kids}`);
  const next = new Provider(`http://127.0.0.1:${server.address().port}${PREFIX}`, configuration(keys));
  next.proxy = false;
  provider = next;
  handler = next.callback();
  active = kids;
}

const app = express();
app.post('/__test/keys', express.json(), (req, res) => { build(req.body.kids); res.json({ kids: active }); });
app.get(`${PREFIX}/login-actions/:uid`, async (req, res, next) => {
  try {
    const details = await provider.interactionDetails(req, res);
    res.type('html').send(loginPage(details.uid));
  } catch (err) { next(err); }
});
app.post(`${PREFIX}/login-actions/:uid`, express.urlencoded({ extended: false }), async (req, res, next) => {
  try {
    const details = await provider.interactionDetails(req, res);
    const user = USERS[req.body.username];
    if (!user || user.password !== req.body.password) {
      res.status(200).type('html').send(loginPage(details.uid, 'Invalid username or password.'));
      return;
    }
    const id = accountId(req.body.username);
    const grant = new provider.Grant({ accountId: id, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    grant.addResourceScope(RESOURCE, details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { login: { accountId: id }, consent: { grantId } },
      { mergeWithLastSubmission: false });
  } catch (err) { next(err); }
});
app.use(PREFIX, (req, res) => handler(req, res));

const server = app.listen(PORT, '127.0.0.1', () => {
  build(allKeys.slice(0, 1).map((k) => k.kid));
  console.log(`listening http://127.0.0.1:${server.address().port}${PREFIX}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
