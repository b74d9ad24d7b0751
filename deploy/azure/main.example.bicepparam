// Example parameters for main.bicep. Copy to main.bicepparam (ignored by git), fill in the ids, and keep
// the secrets out of the file: they are read from the environment of the shell that runs
//
//   export FIELDBOT_BOT_APP_PASSWORD=... FIELDBOT_POSTGRES_PASSWORD=... FIELDBOT_SESSION_KEY=...
//   az deployment group create -g <resource group> --parameters deploy/azure/main.bicepparam
using 'main.bicep'

param botAppId = '00000000-0000-0000-0000-000000000000'
param containerImage = 'myregistry.azurecr.io/fieldbot:0.1.0'
param acrName = 'myregistry'

param botAppPassword = readEnvironmentVariable('FIELDBOT_BOT_APP_PASSWORD')
param postgresAdminPassword = readEnvironmentVariable('FIELDBOT_POSTGRES_PASSWORD')
param sessionKey = readEnvironmentVariable('FIELDBOT_SESSION_KEY')

param extraEnv = [
  {
    name: 'FIELDBOT__FASTTRACK__LEADS'
    value: 'lead1@contoso.com,lead2@contoso.com'
  }
  {
    name: 'FIELDBOT__FASTTRACK__TIME_ZONE'
    value: 'Europe/Berlin'
  }
]
