// Field masks as the official Node client sees them, through `firegate dev`
// with the example people directory (policies/people.yaml): an engineer's
// reads come back without the private fields; the queries that would
// reveal them and a set() that would replace them are refused.
//
//   node masks.mjs --port 8080 --project demo --token JWT [--clients admin,grpc]
//
// --clients admin: @google-cloud/firestore 8.x over REST (preferRest),
//           grpc: the same in its default gRPC mode (adds `listen`)
// Prints one JSON line per step; exits 1 if any expectation failed.

import * as admin from '@google-cloud/firestore';
import { OAuth2Client } from 'google-auth-library';

const STEPS = ['get', 'query', 'getAll', 'transaction', 'whereMasked', 'orderByMasked', 'cursorMasked', 'sumMasked', 'setRefused', 'updateAllowed'];

function parseArgs(argv) {
  const args = { host: '127.0.0.1', project: 'demo', clients: 'admin,grpc' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) && !['port', 'token'].includes(key)) throw new Error(`unknown argument ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  args.port = Number(args.port);
  args.clients = args.clients.split(',').filter(Boolean);
  return args;
}

class Expectation extends Error {}

function expect(condition, message) {
  if (!condition) throw new Expectation(message);
}

// What an admin client's error says its status is (REST: the body; gRPC: the code).
function statusOf(error) {
  if (error?.code === 7) return 'PERMISSION_DENIED';
  try {
    return JSON.parse(error?.message).error.status;
  } catch {
    return `${error?.code}: ${error?.message}`;
  }
}

async function refused(promise, what) {
  try {
    await promise;
  } catch (error) {
    expect(statusOf(error) === 'PERMISSION_DENIED', `${what}: got ${statusOf(error)}`);
    return;
  }
  throw new Expectation(`${what}: want PERMISSION_DENIED, but it succeeded`);
}

// A person as an engineer reads it: private fields absent, the rest intact.
function masked(data, what) {
  expect(data !== undefined, `${what}: no data`);
  for (const key of ['salary', 'ssn', 'tax.id']) {
    expect(!(key in data), `${what}: ${key} shown: ${JSON.stringify(data)}`);
  }
  expect(data.address && !('street' in data.address) && typeof data.address.city === 'string', `${what}: address ${JSON.stringify(data.address)}`);
  expect(typeof data.name === 'string', `${what}: name ${JSON.stringify(data)}`);
}

function steps(client, args) {
  const authClient = new OAuth2Client();
  authClient.setCredentials({ access_token: args.token, expiry_date: Date.now() + 3600_000 });
  const db = new admin.Firestore({
    projectId: args.project, host: args.host, port: args.port, ssl: false,
    preferRest: client !== 'grpc', authClient,
    customHeaders: { Authorization: `Bearer ${args.token}` },
  });
  const people = db.collection('people');
  const ann = people.doc('ann');
  const all = {
    close: () => db.terminate(),
    get: async () => masked((await ann.get()).data(), 'get'),
    query: async () => {
      const snap = await people.where('name', '>=', 'A').get();
      expect(snap.size === 2, `query: ${snap.size} documents`);
      snap.docs.forEach((d) => masked(d.data(), `query ${d.id}`));
    },
    getAll: async () => {
      const snaps = await db.getAll(ann, people.doc('bob'));
      snaps.forEach((s) => masked(s.data(), `getAll ${s.id}`));
    },
    transaction: async () => {
      const data = await db.runTransaction(async (tx) => (await tx.get(ann)).data());
      masked(data, 'transaction read');
    },
    whereMasked: () => refused(people.where('salary', '>', 0).get(), "where('salary', '>', 0)"),
    orderByMasked: () => refused(people.orderBy('salary').get(), "orderBy('salary')"),
    cursorMasked: () => refused(people.orderBy('salary').startAt(100000).get(), 'a cursor on salary'),
    sumMasked: () => refused(people.aggregate({ total: admin.AggregateField.sum('salary') }).get(), "sum('salary')"),
    setRefused: () => refused(ann.set({ name: 'Ann' }), 'set() without merge'),
    updateAllowed: async () => {
      await ann.update({ name: `Ann (${client})` });
      const data = (await ann.get()).data();
      expect(data.name === `Ann (${client})`, `update: ${JSON.stringify(data)}`);
      masked(data, 'after update');
    },
    listen: async () => {
      const data = await new Promise((resolve, reject) => {
        const stop = ann.onSnapshot((snap) => { stop(); resolve(snap.data()); }, reject);
      });
      masked(data, 'listener');
    },
  };
  return all;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let failed = 0;
  for (const client of args.clients) {
    const s = steps(client, args);
    for (const step of client === 'grpc' ? [...STEPS, 'listen'] : STEPS) {
      const line = { client, step };
      try {
        await s[step]();
        line.pass = true;
      } catch (error) {
        line.pass = false;
        line.error = error instanceof Expectation ? error.message : `${statusOf(error)}`;
        failed += 1;
      }
      console.log(JSON.stringify(line));
    }
    await s.close();
  }
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 2;
});
