// The OpenID provider of the OIDC tests: npm's certified `oidc-provider`, configured from the
// environment by tests/services/oidc_provider.py. Test-only additions, all on this provider's own
// port (127.0.0.1):
//   GET  /interaction/:uid          the login page (HTML form; JSON with Accept: application/json)
//   POST /interaction/:uid/login    {login, password} (form or JSON): 303 back into the flow
//   PUT  /_test/accounts/:id        create or replace an account {password, claims}
//   DELETE /_test/accounts/:id      remove it: refresh grants of that account then fail (invalid_grant)
//   POST /_test/tamper {mode}       the next ID token the token endpoint returns is forged (one shot)
// Consent is given by loadExistingGrant (first-party clients, as Keycloak's "consent required: off").
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import Provider from 'oidc-provider';
import { SignJWT, UnsecuredJWT, generateKeyPair, importJWK, decodeJwt, decodeProtectedHeader } from 'jose';

const env = (name, fallback) => process.env[name] ?? fallback;
const issuer = env('OIDC_ISSUER');
const port = Number(env('OIDC_PORT'));
const idTokenTtl = Number(env('OIDC_ID_TOKEN_TTL', '20'));
const jwks = JSON.parse(readFileSync(env('OIDC_JWKS_FILE'), 'utf8'));
const accounts = new Map(Object.entries(JSON.parse(env('OIDC_ACCOUNTS', '{}'))));
let tamper = null;

const configuration = {
  jwks,
  // Clients registered before a restart (dynamic registration lives in memory).
  clients: JSON.parse(env('OIDC_CLIENTS', '[]')),
  cookies: { keys: ['moorage-test-cookie-key'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  // Put the scope claims in the ID token as most providers do (Keycloak, Dex, Azure AD).
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
  },
  ttl: {
    IdToken: idTokenTtl,
    AccessToken: idTokenTtl,
    RefreshToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  // A client allowed the refresh_token grant gets a refresh token (Keycloak's behaviour), without
  // the offline_access + prompt=consent dance; a client without that grant never gets one.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async loadExistingGrant(ctx) {
    const { client, session, params } = ctx.oidc;
    if (!session.accountId) return undefined;
    const grantId = session.grantIdFor(client.clientId);
    const grant = grantId ? await ctx.oidc.provider.Grant.find(grantId)
      : new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope(String(params.scope || 'openid'));
    await grant.save();
    if (!grantId) session.grantIdFor(client.clientId, grant.jti);
    return grant;
  },
  async findAccount(ctx, id) {
    const account = accounts.get(id);
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id, ...account.claims };
      },
    };
  },
};

const provider = new Provider(issuer, configuration);

async function body(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if ((ctx.get('content-type') || '').includes('application/json')) return text ? JSON.parse(text) : {};
  return Object.fromEntries(new URLSearchParams(text));
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function forge(idToken, mode) {
  const claims = decodeJwt(idToken);
  const header = decodeProtectedHeader(idToken);
  const now = Math.floor(Date.now() / 1000);
  if (mode === 'alg-none') return new UnsecuredJWT(claims).encode();
  if (mode === 'wrong-nonce') claims.nonce = 'forged-nonce';
  if (mode === 'expired') Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
  if (mode === 'not-yet-valid') Object.assign(claims, { iat: now + 3600, nbf: now + 3600, exp: now + 7200 });
  if (mode === 'issuer') claims.iss = 'https://issuer.invalid';
  if (mode === 'unknown-key') {
    const { privateKey } = await generateKeyPair('RS256');
    return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'not-in-the-jwks' }).sign(privateKey);
  }
  const jwk = jwks.keys.find((key) => key.kid === header.kid);
  return new SignJWT(claims).setProtectedHeader({ alg: header.alg, kid: header.kid })
    .sign(await importJWK(jwk, header.alg));
}

provider.use(async (ctx, next) => {
  const path = ctx.path;
  if (path === '/favicon.ico') {  // what a browser asks for first; a 404 would be a console error in the UI tests
    ctx.status = 204;
    return;
  }
  let match = path.match(/^\/_test\/accounts\/([^/]+)$/);
  if (match) {
    if (ctx.method === 'PUT') accounts.set(match[1], await body(ctx));
    else if (ctx.method === 'DELETE') accounts.delete(match[1]);
    ctx.status = 204;
    return;
  }
  if (path === '/_test/tamper' && ctx.method === 'POST') {
    tamper = (await body(ctx)).mode;
    ctx.status = 204;
    return;
  }
  match = path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (match) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (!match[2] && ctx.method === 'GET') {
      if ((ctx.get('accept') || '').includes('application/json')) {
        ctx.body = { uid: details.uid, prompt: details.prompt.name, client_id: details.params.client_id };
        return;
      }
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Test provider login</title><h1>Test provider</h1>
<form method="post" action="/interaction/${escape(details.uid)}/login">
<label>Login <input name="login" id="login" autocomplete="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button type="submit">Sign in</button></form>`;
      return;
    }
    if (match[2] && ctx.method === 'POST') {
      const { login, password } = await body(ctx);
      const account = accounts.get(login);
      if (!account || account.password !== password) {
        ctx.status = 401;
        ctx.body = { error: 'wrong login or password' };
        return;
      }
      const to = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: login } },
        { mergeWithLastSubmission: false });
      ctx.status = 303;
      ctx.redirect(to);
      return;
    }
  }
  await next();
  if (path === '/token' && ctx.method === 'POST' && tamper && ctx.body && ctx.body.id_token) {
    const mode = tamper;
    tamper = null;
    ctx.body = { ...ctx.body, id_token: await forge(ctx.body.id_token, mode) };
  }
});

// Exit with the test run that started us, even when it was killed before its teardown.
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(0); }, 1000).unref();

const ready = () => process.stdout.write(`listening ${issuer}\n`);
if (process.env.OIDC_TLS_CERT) {
  // HTTPS with a certificate of the test's own CA (Moorage's auth.oidc.ca_bundle is tested with it).
  const tls = { cert: readFileSync(process.env.OIDC_TLS_CERT), key: readFileSync(process.env.OIDC_TLS_KEY) };
  createServer(tls, provider.callback()).listen(port, '127.0.0.1', ready);
} else {
  provider.listen(port, '127.0.0.1', ready);
}
