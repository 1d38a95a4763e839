// De-aggregates Kinesis records with aws-kinesis-agg, the KPL format's own Node.js library,
// so that the aggregation tests check sse-ingest's encoder against an implementation it
// shares no code with.
//
//   node deaggregate.js < records.json
//
// Input: a JSON array of Kinesis records as read from a stream, in shard order:
//   [{"shard": "shardId-...", "partitionKey": "...", "data": BASE64, "sequenceNumber": "..."}]
// Output: one JSON line per user record, in order:
//   {"shard", "kinesisPartitionKey", "partitionKey", "data": BASE64, "aggregated": bool}
// Checksums are verified: a wrong MD5 (or an undecodable message) exits 1 naming the record.
'use strict'

const { deaggregateSync } = require('aws-kinesis-agg')

const MAGIC = Buffer.from('f3899ac2', 'hex')

const chunks = []
process.stdin.on('data', (chunk) => chunks.push(chunk))
process.stdin.on('end', () => {
  const records = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  const out = []
  for (const record of records) {
    const aggregated = Buffer.from(record.data, 'base64').subarray(0, 4).equals(MAGIC)
    deaggregateSync(record, true, (err, userRecords) => {
      if (err) {
        process.stderr.write(`cannot de-aggregate record ${record.sequenceNumber} of ${record.shard}: ${err}\n`)
        process.exit(1)
      }
      for (const user of userRecords) {
        out.push(JSON.stringify({
          shard: record.shard,
          kinesisPartitionKey: record.partitionKey,
          partitionKey: user.partitionKey,
          data: user.data,
          aggregated
        }))
      }
    })
  }
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''))
})
