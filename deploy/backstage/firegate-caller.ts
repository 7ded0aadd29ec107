// A Backstage backend plugin that calls firegate with a plugin token, as
// itself or on behalf of the signed-in user. The proxy plugin refuses plugin
// tokens, so a plugin calls firegate directly. tests/backstage/backend.js
// runs the same plugin (in CommonJS) against a real Backstage and firegate.
import {
  coreServices,
  createBackendPlugin,
} from '@backstage/backend-plugin-api';
import express from 'express';
import Router from 'express-promise-router';

export const firegateCallerPlugin = createBackendPlugin({
  pluginId: 'firegate-caller',
  register(env) {
    env.registerInit({
      deps: {
        auth: coreServices.auth,
        httpAuth: coreServices.httpAuth,
        httpRouter: coreServices.httpRouter,
        config: coreServices.rootConfig,
      },
      async init({ auth, httpAuth, httpRouter, config }) {
        const firegate = config.getString('firegate.baseUrl');
        const db = 'projects/PROJECT_ID/databases/(default)/documents';
        const router = Router();
        router.use(express.json());

        // As the user who called this route: firegate's principal is the
        // user (`sub`, and groups from their ownership refs), and the audit
        // line names this plugin (`backstage_plugin`).
        router.get('/deployments/:team', async (req, res) => {
          const { token } = await auth.getPluginRequestToken({
            onBehalfOf: await httpAuth.credentials(req, { allow: ['user'] }),
            targetPluginId: 'firegate', // = plugin_tokens.audience in firegate
          });
          const answer = await fetch(
            `${firegate}/v1/${db}/teams/${encodeURIComponent(req.params.team)}/deployments`,
            { headers: { Authorization: `Bearer ${token}` } },
          );
          res.status(answer.status).json(await answer.json());
        });

        // As the plugin itself (a scheduled job, no user): firegate's
        // principal is `plugin:firegate-caller`, with no groups.
        router.post('/sync', async (_req, res) => {
          const { token } = await auth.getPluginRequestToken({
            onBehalfOf: await auth.getOwnServiceCredentials(),
            targetPluginId: 'firegate',
          });
          const answer = await fetch(`${firegate}/v1/${db}:commit`, {
            method: 'POST',
            headers: {
              Authorization: `Bearer ${token}`,
              'Content-Type': 'application/json',
            },
            body: JSON.stringify({ writes: [] }),
          });
          res.status(answer.status).json(await answer.json());
        });

        httpRouter.use(router);
      },
    });
  },
});

export default firegateCallerPlugin;
