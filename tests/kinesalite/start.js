// Starts kinesalite (an in-memory Kinesis API server) for the kinesis-producer tests and
// benchmark, bound to 127.0.0.1 only.
//
//   node start.js [PORT]     PORT defaults to 0: the system picks a free port
//
// Prints the port it listens on as one line on stdout, then runs until its stdin closes
// (../support/serve-on-loopback.js).
'use strict'

const kinesalite = require('kinesalite')
const { serveOnLoopback } = require('../support/serve-on-loopback.js')

const server = kinesalite({
  // Stream state changes take these many milliseconds (the defaults are 500).
  createStreamMs: 20,
  deleteStreamMs: 20,
  updateStreamMs: 20,
  shardLimit: 100,
})

serveOnLoopback('kinesalite', server, Number(process.argv[2] || 0))
