// A real OpenID provider (oidc-provider) for firegate's authn tests.
// Listens on 127.0.0.1:$PORT (0 = any free port) and prints
// `ready http://127.0.0.1:PORT` once it answers. Issues client_credentials
// JWT access tokens (typ at+jwt, RS256) for the audience $AUDIENCE with
// `email` and `groups` claims taken from the client's entry below; for the
// resource $OPAQUE_AUDIENCE it issues opaque tokens instead, which the
// client `firegate` (secret `firegate-secret`) can introspect at
// /token/introspection (RFC 7662).
import http from 'node:http';
import Provider from 'oidc-provider';

const audience = process.env.AUDIENCE || 'https://firegate.test';
const opaqueAudience = process.env.OPAQUE_AUDIENCE || 'https://opaque.firegate.test';

// Caller identities: client_id -> secret and the claims its tokens carry.
const identities = {
  'svc-reader': { secret: 'reader-secret', email: 'reader@firegate.test', groups: ['team-a', 'readers'] },
  'svc-writer': { secret: 'writer-secret', email: 'writer@firegate.test', groups: ['team-b'] },
  firegate: { secret: 'firegate-secret', email: 'proxy@firegate.test', groups: [] },
};

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: Object.entries(identities).map(([id, c]) => ({
      client_id: id,
      client_secret: c.secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'firestore.read firestore.write',
    })),
    scopes: ['firestore.read', 'firestore.write'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== audience && resource !== opaqueAudience) {
            throw new Error(`unknown resource ${resource}`);
          }
          return {
            scope: 'firestore.read firestore.write',
            audience: resource,
            accessTokenFormat: resource === audience ? 'jwt' : 'opaque',
            accessTokenTTL: 300,
          };
        },
      },
    },
    extraTokenClaims: (_ctx, token) => {
      const who = identities[token.clientId];
      return who ? { email: who.email, groups: who.groups } : {};
    },
  });
  server.on('request', provider.callback());
  console.log(`ready ${issuer}`);
});
