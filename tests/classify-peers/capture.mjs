// Drives the official Firestore clients against a recording server and
// prints every request they send as one JSON line:
// {"client","method","url","contentType","body"}.
// The classifier tests (tests/peers/classify.rs) classify each capture.
import http from 'node:http';
import { Firestore, FieldValue } from '@google-cloud/firestore';
import { initializeApp } from 'firebase/app';
import {
  getFirestore, connectFirestoreEmulator, doc, getDoc, setDoc, collection,
  query, where, getDocs, runTransaction, getCount,
} from 'firebase/firestore/lite';

const T = '2024-01-01T00:00:00.000000Z';
// The transaction id handed out, as firegate would seal it (set by the test).
const TX = process.env.FIREGATE_SEALED_TX || 'dHgtMQ==';
let client = 'node';

function reply(rpc, req) {
  switch (rpc) {
    case 'batchGet':
      return (req.documents || []).map((name, i) => ({
        missing: name, readTime: T,
        ...(i === 0 && req.newTransaction ? { transaction: TX } : {}),
      }));
    case 'commit':
      return { writeResults: (req.writes || []).map(() => ({ updateTime: T })), commitTime: T };
    case 'batchWrite':
      return { writeResults: (req.writes || []).map(() => ({ updateTime: T })),
               status: (req.writes || []).map(() => ({})) };
    case 'beginTransaction':
      return { transaction: TX };
    case 'rollback':
      return {};
    case 'runQuery':
      return [{ readTime: T, ...(req.newTransaction ? { transaction: TX } : {}) }];
    case 'runAggregationQuery':
      return [{
        result: { aggregateFields: Object.fromEntries(
          ((req.structuredAggregationQuery || {}).aggregations || [])
            .map((a) => [a.alias, { integerValue: '0' }])) },
        readTime: T,
      }];
    case 'listCollectionIds':
      return { collectionIds: [] };
    default:
      return {};
  }
}

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    console.log(JSON.stringify({
      client, method: req.method, url: req.url,
      contentType: req.headers['content-type'] || null, body,
    }));
    const rpc = (req.url.split('?')[0].match(/:([A-Za-z]+)$/) || [])[1];
    let parsed = {};
    try { parsed = body ? JSON.parse(body) : {}; } catch { /* recorded as sent */ }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(reply(rpc, parsed)));
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;

// @google-cloud/firestore over REST (preferRest), as test-peers.md describes.
const authClient = {
  getRequestHeaders: async () => new Headers({ Authorization: 'Bearer test' }),
  getRequestMetadata: async () => ({ headers: { Authorization: 'Bearer test' } }),
  fetch: (...args) => fetch(...args),
};
const db = new Firestore({
  projectId: 'p', host: '127.0.0.1', port, ssl: false, preferRest: true,
  authClient, customHeaders: { Authorization: 'Bearer test' },
});
await db.doc('teams/t1').get();
await db.doc('teams/t1').set({ n: 1, at: FieldValue.serverTimestamp() });
await db.doc('teams/t2').update({ n: 2 });
await db.doc('teams/t3').create({ n: 3 });
await db.doc('teams/t4').delete();
await db.collection('teams/t1/deployments').where('env', '==', 'prod').get();
await db.collectionGroup('deployments').where('n', '>=', 3).get();
await db.collection('teams').count().get();
await db.doc('teams/t1').listCollections();
await db.runTransaction(async (tx) => {
  const snap = await tx.get(db.doc('teams/t1'));
  tx.set(db.doc('teams/t1'), { seen: snap.exists });
});
const writer = db.bulkWriter();
writer.set(db.doc('teams/t5'), { n: 5 });
await writer.close();
await db.terminate();

// firebase/firestore/lite (text/plain, string enums, ?key=).
client = 'lite';
const app = initializeApp({ projectId: 'p', apiKey: 'AIzaSyDummyKey' });
const lite = getFirestore(app);
connectFirestoreEmulator(lite, '127.0.0.1', port, { mockUserToken: 'header.payload.signature' });
await getDoc(doc(lite, 'catalog/a'));
await setDoc(doc(lite, 'catalog/a'), { kind: 'Component' });
await getDocs(query(collection(lite, 'catalog'), where('kind', '==', 'Component')));
await getCount(collection(lite, 'catalog'));
await runTransaction(lite, async (tx) => {
  const snap = await tx.get(doc(lite, 'catalog/a'));
  tx.set(doc(lite, 'catalog/a'), { n: snap.exists() ? 1 : 0 });
});
server.close();
process.exit(0);
