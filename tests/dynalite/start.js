// Starts dynalite (an in-memory DynamoDB API server) for the checkpoint-store tests, bound to
// 127.0.0.1 only.
//
//   node start.js [PORT]     PORT defaults to 0: the system picks a free port
//
// Prints the port it listens on as one line on stdout, then runs until its stdin closes
// (../support/serve-on-loopback.js).
'use strict'

const dynalite = require('dynalite')
const { serveOnLoopback } = require('../support/serve-on-loopback.js')

const server = dynalite({
  // Table state changes take these many milliseconds (the defaults are 500).
  createTableMs: 20,
  deleteTableMs: 20,
  updateTableMs: 20,
})

serveOnLoopback('dynalite', server, Number(process.argv[2] || 0))
