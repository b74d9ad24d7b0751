// Reference bot for scripts/bench: a Bot Framework SDK v4 echo bot on express, as the SDK samples write it.
// Authentication is disabled (no MicrosoftAppId), which spares Node the JWT checks fieldbot performs, so the
// comparison favours Node. Replies go to the activity's serviceUrl, i.e. the bench tool's fake Connector.
'use strict';

const express = require('express');
const {
  CloudAdapter,
  ConfigurationBotFrameworkAuthentication,
  TurnContext,
} = require('botbuilder');

const HELP = [
  'fieldbot commands:',
  '- help: this list',
  '- roles [ROLE]: who does what on the account team (e.g. roles TAM)',
].join('\n');

const ROLES = {
  tam: 'TAM (Technical Account Manager): owns the support relationship and escalations.',
};

const auth = new ConfigurationBotFrameworkAuthentication({});
const adapter = new CloudAdapter(auth);
adapter.onTurnError = async (context, error) => {
  console.error('turn error:', error && error.message);
};

async function onTurn(context) {
  if (context.activity.type !== 'message') {
    return;
  }
  const text = (TurnContext.removeRecipientMention(context.activity) || context.activity.text || '')
    .trim();
  const [command, arg] = text.split(/\s+/);
  let reply;
  if (command.toLowerCase() === 'help') {
    reply = HELP;
  } else if (command.toLowerCase() === 'roles') {
    reply = ROLES[(arg || '').toLowerCase()] || 'Unknown role.';
  } else {
    reply = `You said: ${text}`;
  }
  await context.sendActivity(reply);
}

const app = express();
app.use(express.json({ limit: '256kb' }));
app.post('/api/messages', (req, res) => adapter.process(req, res, onTurn));

const port = Number(process.env.PORT || 3978);
app.listen(port, '127.0.0.1', () => {
  console.log(`node bot listening on 127.0.0.1:${port}`);
});
