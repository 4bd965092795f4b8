// PouchDB 9 for Node with the in-memory adapter for local (client-side) databases.
import PouchDBBase from 'pouchdb';
import memoryAdapter from 'pouchdb-adapter-memory';

export const PouchDB = PouchDBBase.plugin(memoryAdapter);
