// PouchDB 9 for Node with the in-memory adapter for local (client-side) databases, and
// pouchdb-find (Mango queries: `find`, `createIndex`, `getIndexes`, `deleteIndex`, `explain`).
import PouchDBBase from 'pouchdb';
import memoryAdapter from 'pouchdb-adapter-memory';
import findPlugin from 'pouchdb-find';

export const PouchDB = PouchDBBase.plugin(memoryAdapter).plugin(findPlugin);
