// A real OpenID provider for Kura's sign-in tests (never for production).
//
// Wraps npm `oidc-provider` 9.x with: one static confidential client, PKCE required, custom
// claims (`kura_roles`) in the ID token, accounts with REAL passwords checked by this file's own
// login page (the library's devInteractions accept any password, so they are off), automatic
// consent for the static client, and a loopback-only `POST /__test/rotate` that replaces the
// signing key set (the old key disappears from the JWKS) for the relying party's key-refresh test.
//
// Usage:
//   node provider.mjs --config <file.json> [--host 127.0.0.2] [--port 0] [--exit-with-stdin]
// Environment fallbacks: KURA_OIDC_CONFIG, KURA_OIDC_HOST, KURA_OIDC_PORT.
// Config file:
//   { "client": { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."] },
//     "accounts": [ { "id": "alice", "password": "...", "name": "...", "email": "...",
//                     "kura_roles": ["researcher"] } ] }
// Prints exactly one line `READY <issuer-url>` on stdout once it listens; logs go to stderr.
// `--exit-with-stdin` makes it exit when its stdin closes (the launching test process died).

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { generateKeyPairSync, randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import Provider from 'oidc-provider';

function parseArgs(argv) {
  const out = {
    config: process.env.KURA_OIDC_CONFIG,
    host: process.env.KURA_OIDC_HOST || '127.0.0.2',
    port: Number(process.env.KURA_OIDC_PORT || 0),
    exitWithStdin: false,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      i += 1;
      if (i >= argv.length) fail(`${arg} needs a value`);
      return argv[i];
    };
    if (arg === '--config') out.config = value();
    else if (arg === '--host') out.host = value();
    else if (arg === '--port') out.port = Number(value());
    else if (arg === '--exit-with-stdin') out.exitWithStdin = true;
    else fail(`unknown argument ${arg}`);
  }
  if (!out.config) fail('missing --config <file.json> (or KURA_OIDC_CONFIG)');
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) fail('--port must be 0..65535');
  return out;
}

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

function loadConfig(path) {
  let config;
  try {
    config = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    fail(`cannot read config ${path}: ${err.message}`);
  }
  const { client, accounts } = config;
  if (!client?.client_id || !client?.client_secret || !Array.isArray(client?.redirect_uris)) {
    fail('config.client needs client_id, client_secret and redirect_uris');
  }
  if (!Array.isArray(accounts)) fail('config.accounts must be an array');
  const byId = new Map();
  for (const a of accounts) {
    if (!a.id || typeof a.password !== 'string') fail('every account needs id and password');
    byId.set(a.id, a);
  }
  return { client, accounts: byId };
}

function newSigningKeys() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' }] };
}

// Compares secrets without leaking their length or content through timing.
function sameSecret(a, b) {
  const ha = createHash('sha256').update(String(a)).digest();
  const hb = createHash('sha256').update(String(b)).digest();
  return timingSafeEqual(ha, hb);
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  // No script at all; `form-action` is deliberately absent because Chromium applies it to the
  // redirect chain that follows the form post (which ends at the relying party).
  res.setHeader('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`
    + `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`);
}

function loginForm(res, uid, clientId, error, login = '') {
  const err = error ? `<p role="alert" class="error">${escapeHtml(error)}</p>` : '';
  page(res, error ? 401 : 200, 'Sign in to the test provider', `${err}`
    + `<p>Client: ${escapeHtml(clientId)}</p>`
    + `<form method="post" action="/interaction/${encodeURIComponent(uid)}/login">`
    + `<label>User name <input name="login" autocomplete="username" value="${escapeHtml(login)}" required></label>`
    + '<label>Password <input name="password" type="password" autocomplete="current-password" required></label>'
    + '<button type="submit">Sign in</button></form>');
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function isLoopback(address) {
  return address === '::1' || /^(::ffff:)?127\./.test(address || '');
}

function buildProvider(issuer, settings, jwks, cookieKeys) {
  const { client, accounts } = settings;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: client.client_id,
      client_secret: client.client_secret,
      redirect_uris: client.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    // Keep custom claims in the ID token even though an access token is also issued.
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub', 'kura_roles'],
      profile: ['name'],
      email: ['email', 'email_verified'],
    },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: cookieKeys },
    jwks,
    ttl: {
      AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600,
    },
    async findAccount(ctx, sub) {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            name: account.name,
            email: account.email,
            email_verified: Boolean(account.email),
            kura_roles: account.kura_roles || [],
          };
        },
      };
    },
  });
  provider.on('server_error', (ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
  return provider;
}

async function handleInteraction(state, req, res, url) {
  const { provider } = state;
  const match = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!match) return page(res, 404, 'Not found', '');
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (match[1] !== uid) return page(res, 400, 'Interaction mismatch', '');

  if (match[2] === '/login') {
    if (req.method !== 'POST') return page(res, 405, 'Method not allowed', '');
    const form = await readForm(req);
    const login = form.get('login') || '';
    const password = form.get('password') || '';
    const account = state.settings.accounts.get(login);
    // Compare against a throwaway value for unknown users so both paths cost the same.
    const ok = sameSecret(account ? account.password : randomBytes(16).toString('hex'), password);
    if (!account || !ok) {
      process.stderr.write(`login refused for ${JSON.stringify(login)}\n`);
      return loginForm(res, uid, params.client_id, 'Invalid user name or password.', login);
    }
    return provider.interactionFinished(req, res, { login: { accountId: account.id } }, {
      mergeWithLastSubmission: false,
    });
  }

  if (req.method !== 'GET') return page(res, 405, 'Method not allowed', '');
  if (prompt.name === 'login') return loginForm(res, uid, params.client_id);
  if (prompt.name === 'consent') {
    // Consent is implied for the one static client this provider knows.
    if (params.client_id !== state.settings.client.client_id) return page(res, 403, 'Unknown client', '');
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return page(res, 400, `Unsupported prompt ${prompt.name}`, '');
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const settings = loadConfig(args.config);
  const cookieKeys = [randomBytes(32).toString('hex')];
  const state = { settings, provider: undefined, handler: undefined };

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://placeholder');
      if (url.pathname === '/__test/rotate') {
        if (req.method !== 'POST' || !isLoopback(req.socket.remoteAddress)) return page(res, 403, 'Forbidden', '');
        // A new Provider with a new key set; sessions and grants survive because the in-memory
        // adapter's storage is shared by all instances in this process.
        const jwks = newSigningKeys();
        state.provider = buildProvider(state.issuer, settings, jwks, cookieKeys);
        state.handler = state.provider.callback();
        process.stderr.write(`rotated signing keys, new kid ${jwks.keys[0].kid}\n`);
        res.setHeader('Content-Type', 'application/json');
        return res.end(JSON.stringify({ kid: jwks.keys[0].kid }));
      }
      if (url.pathname.startsWith('/interaction/')) return await handleInteraction(state, req, res, url);
      return state.handler(req, res);
    } catch (err) {
      process.stderr.write(`request failed: ${err.stack}\n`);
      if (!res.headersSent) return page(res, 400, 'Request failed', `<p>${escapeHtml(err.message)}</p>`);
      return res.end();
    }
  });

  server.listen(args.port, args.host, () => {
    const { address, port } = server.address();
    const host = address.includes(':') ? `[${address}]` : address;
    state.issuer = `http://${host}:${port}`;
    state.provider = buildProvider(state.issuer, settings, newSigningKeys(), cookieKeys);
    state.handler = state.provider.callback();
    process.stdout.write(`READY ${state.issuer}\n`);
  });
  server.on('error', (err) => fail(`cannot listen on ${args.host}:${args.port}: ${err.message}`));

  if (args.exitWithStdin) {
    process.stdin.on('end', () => process.exit(0));
    process.stdin.on('error', () => process.exit(0));
    process.stdin.resume();
  }
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}

main();
