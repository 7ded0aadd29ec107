// A real Backstage backend for tests/peers/backstage.rs: auth (guest provider),
// proxy, a small plugin that calls firegate with plugin tokens, and (with
// FIREGATE_TEST_CATALOG=1) the catalog, the notifications plugin, and a
// test-only sign-in provider that signs anybody in.
// Config comes from the file the test writes (`--config FILE`); prints
// `ready <baseUrl>` once it serves.
'use strict';

const { createBackend } = require('@backstage/backend-defaults');
const {
  createBackendPlugin,
  coreServices,
} = require('@backstage/backend-plugin-api');
const { createBackendModule } = require('@backstage/backend-plugin-api');
const authNode = require('@backstage/plugin-auth-node');
const express = require('express');

// The plugin of deploy/backstage/firegate-caller.ts in plain CommonJS: it
// asks Backstage for a token aimed at `firegate` and calls firegate itself,
// since the proxy plugin refuses plugin tokens.
const firegateCaller = createBackendPlugin({
  pluginId: 'firegate-caller',
  register(env) {
    env.registerInit({
      deps: {
        auth: coreServices.auth,
        httpAuth: coreServices.httpAuth,
        router: coreServices.httpRouter,
        config: coreServices.rootConfig,
      },
      async init({ auth, httpAuth, router, config }) {
        const firegate = config.getString('firegate.baseUrl');
        const app = express.Router();
        app.use(express.json());
        // POST {path, method?, body?, requestId?}: `as` is `plugin` (the plugin's own
        // identity) or `user` (on behalf of the calling user).
        app.post('/call/:as', async (req, res) => {
          try {
            const onBehalfOf =
              req.params.as === 'user'
                ? await httpAuth.credentials(req, { allow: ['user'] })
                : await auth.getOwnServiceCredentials();
            const { token } = await auth.getPluginRequestToken({
              onBehalfOf,
              targetPluginId: 'firegate',
            });
            const answer = await fetch(`${firegate}${req.body.path}`, {
              method: req.body.method || 'GET',
              headers: {
                authorization: `Bearer ${token}`,
                'content-type': 'application/json',
                'x-request-id': req.body.requestId || '',
              },
              body: req.body.body ? JSON.stringify(req.body.body) : undefined,
            });
            res.status(200).json({
              status: answer.status,
              body: await answer.text(),
            });
          } catch (err) {
            res.status(500).json({ error: String(err) });
          }
        });
        router.use(app);
      },
    });
  },
});

// Test only: `GET /api/auth/as/refresh?user=NAME` signs in as
// user:default/NAME (a catalog user), so a test can read any user's
// notifications with that user's own Backstage token.
const signInAs = createBackendModule({
  pluginId: 'auth',
  moduleId: 'test-sign-in-as',
  register(reg) {
    reg.registerInit({
      deps: { providers: authNode.authProvidersExtensionPoint },
      async init({ providers }) {
        providers.registerProvider({
          providerId: 'as',
          factory: authNode.createProxyAuthProviderFactory({
            authenticator: authNode.createProxyAuthenticator({
              defaultProfileTransform: async () => ({ profile: {} }),
              initialize: () => undefined,
              async authenticate({ req }) {
                return { result: { user: String(req.query.user || '') } };
              },
            }),
            signInResolver: async ({ result }, ctx) =>
              ctx.signInWithCatalogUser({ entityRef: `user:default/${result.user}` }),
          }),
        });
      },
    });
  },
});

const backend = createBackend();
backend.add(require('@backstage/plugin-auth-backend'));
backend.add(require('@backstage/plugin-auth-backend-module-guest-provider'));
backend.add(require('@backstage/plugin-proxy-backend'));
backend.add(firegateCaller);
// The catalog, for tests/peers/catalog.rs (its config names the locations).
if (process.env.FIREGATE_TEST_CATALOG === '1') {
  backend.add(require('@backstage/plugin-catalog-backend'));
  backend.add(require('@backstage/plugin-notifications-backend'));
  backend.add(signInAs);
}
backend
  .start()
  .then(() => console.log('ready'))
  .catch(err => {
    console.error(err);
    process.exit(1);
  });
